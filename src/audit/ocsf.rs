//! One decision as an OCSF 1.8 *API Activity* event (class 6003): "an actor called an API".
//! The mapping, field by field, is in the README ("Decision records"); what OCSF has no field
//! for (access mode, snapshot version, Cedar errors) sits under `unmapped.tollgate`.
//!
//! Serialised from borrowed structs straight into the writer's buffer: the writer task pays
//! for it, never the request.

use std::borrow::Cow;

use serde::Serialize;

use super::Event;
use crate::evidence::{Actor, Evidence};
use crate::identity::AccessMode;
use crate::identity::short_hash;

/// The OCSF schema version the records follow.
pub const OCSF_VERSION: &str = "1.8.0";
/// `class_uid` of API Activity.
pub const API_ACTIVITY: u32 = 6003;

/// How records are written.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordOptions {
    /// Replace user identifiers (the user a delegated call acts for) by a hash.
    pub pseudonymise_users: bool,
}

/// The user a delegated call acted for, as records name it: as the token did, or its
/// pseudonym.
pub fn user(e: &Evidence, options: RecordOptions) -> Option<Cow<'_, str>> {
    let user = e.actor.as_ref()?.user.as_deref()?;
    Some(if options.pseudonymise_users {
        Cow::Owned(pseudonym(user))
    } else {
        Cow::Borrowed(user)
    })
}

/// Appends `event` as one JSON line to `out`; `user` is [`user`]'s answer.
pub fn write_line(out: &mut Vec<u8>, event: &Event, user: Option<&str>, options: RecordOptions) {
    let e = event.evidence;
    let (activity_id, activity_name) = activity(&e.request.method);
    let decision_id = event.decision_id.hex();
    let decision_id = decision_id.as_str();
    let allowed = e.allowed();
    let jti = e
        .actor
        .as_ref()
        .and_then(|a| a.token.as_ref())
        .and_then(|t| t.jti.as_deref())
        .map(|jti| format!("sha256:{}", short_hash(jti.as_bytes())));
    let thumbprint = e
        .actor
        .as_ref()
        .and_then(|a| a.workload.as_ref())
        .and_then(|w| w.thumbprint)
        .map(|t| format!("sha256:{}", hex::encode(t)));
    let target = e.target.as_ref().map(|t| {
        (
            format!("{}::{:?}", t.resource_type, t.resource_id),
            &*t.resource_type,
        )
    });
    let source_ip = e.request.source_ip.map(|ip| ip.to_string());
    let record = Record {
        class_uid: API_ACTIVITY,
        category_uid: 6,
        activity_id,
        // A caption is optional, but Other must carry the source's own value.
        activity_name: (activity_id == 99).then_some(activity_name),
        type_uid: API_ACTIVITY * 100 + activity_id,
        severity_id: 1,
        time: event.time_ms,
        status_id: if allowed { 1 } else { 2 },
        status_code: e.reason,
        status_detail: &e.message,
        action_id: if allowed { 1 } else { 2 },
        disposition_id: if allowed { 1 } else { 2 },
        metadata: Metadata {
            version: OCSF_VERSION,
            uid: decision_id,
            profiles: &["security_control"],
            product: Product {
                name: "Tollgate",
                vendor_name: "Tollgate",
                version: env!("CARGO_PKG_VERSION"),
            },
        },
        actor: actor(e, user, thumbprint.as_deref()),
        api: Api {
            operation: e.target.as_ref().map_or("", |t| &*t.action),
            response: Response {
                code: e.status,
                error: (!allowed).then_some(e.reason),
                message: (!e.message.is_empty()).then_some(e.message.as_str()),
            },
            token: e
                .actor
                .as_ref()
                .and_then(|a| a.token.as_ref())
                .map(|t| Token {
                    type_id: 99,
                    r#type: if t.svid { "JWT-SVID" } else { "JWT" },
                    uid: jti.as_deref(),
                    expiration_time: t.expires_at.saturating_mul(1000),
                }),
        },
        resources: target.as_ref().map(|(uid, type_name)| {
            [Resource {
                uid,
                r#type: type_name,
            }]
        }),
        src_endpoint: Endpoint {
            ip: source_ip.as_deref(),
            uid: if source_ip.is_none() {
                Some("unknown")
            } else {
                None
            },
        },
        http_request: HttpRequest {
            http_method: &e.request.method,
            url: Url {
                path: &e.request.path,
                hostname: &e.request.host,
                query_string: event.query,
            },
        },
        unmapped: Unmapped {
            tollgate: Tollgate {
                access_mode: e.actor.as_ref().map(|a| mode(a.mode)),
                trust_domain: e
                    .actor
                    .as_ref()
                    .and_then(|a| a.workload.as_ref())
                    .map(|w| w.trust_domain.as_str())
                    .filter(|d| !d.is_empty()),
                client_id: e
                    .actor
                    .as_ref()
                    .and_then(|a| a.token.as_ref())
                    .and_then(|t| t.client_id.as_deref()),
                credentials_expire: e
                    .actor
                    .as_deref()
                    .and_then(Actor::credentials_expire)
                    .map(|s| s.saturating_mul(1000)),
                snapshot: Snapshot {
                    policies: &e.snapshot.policies,
                    trust: &e.snapshot.trust,
                },
                // Cedar's messages name entities, users among them: with users pseudonymised,
                // only how many there were.
                errors: if options.pseudonymise_users {
                    &[]
                } else {
                    &e.errors
                },
                error_count: e.errors.len(),
                elapsed_us: event.elapsed_us,
            },
        },
    };
    if serde_json::to_writer(&mut *out, &record).is_ok() {
        out.push(b'\n');
    }
}

/// OCSF `activity_id` from the HTTP method: reads, creates, updates, deletes; anything else
/// is Other (with the method as its name), no method at all Unknown.
fn activity(method: &str) -> (u32, &str) {
    match method {
        "GET" | "HEAD" | "OPTIONS" => (2, "Read"),
        "POST" => (1, "Create"),
        "PUT" | "PATCH" => (3, "Update"),
        "DELETE" => (4, "Delete"),
        "" => (0, "Unknown"),
        other => (99, other),
    }
}

fn mode(mode: AccessMode) -> &'static str {
    match mode {
        AccessMode::AppOnly => "app_only",
        AccessMode::Delegated => "delegated",
    }
}

fn actor<'a>(
    e: &'a Evidence,
    user: Option<&'a str>,
    thumbprint: Option<&'a str>,
) -> ActorRecord<'a> {
    let Some(a) = &e.actor else {
        // Refused before identity: OCSF wants some actor; this one says nobody was verified.
        return ActorRecord {
            app_uid: None,
            user: Some(User {
                uid: None,
                name: Some("unverified"),
                type_id: 0,
            }),
            idp: None,
            session: None,
            authorizations: authorizations(e),
        };
    };
    let workload = a.workload.as_ref();
    // The workload is `app_uid`; a user is named only when the call is made for one.
    let user = match (a.mode, user) {
        (AccessMode::Delegated, Some(user)) => Some(User {
            uid: Some(user),
            name: None,
            type_id: 1,
        }),
        _ => None,
    };
    ActorRecord {
        app_uid: Some(&a.principal),
        user,
        idp: a.token.as_ref().map(|t| Idp { name: &t.issuer }),
        session: workload.map(|w| Session {
            credential_uid: thumbprint,
            expiration_time: w.not_after.map(|s| s.saturating_mul(1000)),
            is_remote: true,
        }),
        authorizations: authorizations(e),
    }
}

fn authorizations(e: &Evidence) -> Vec<Authorization<'_>> {
    let decision = if e.allowed() { "allow" } else { "deny" };
    e.determining
        .iter()
        .map(|id| Authorization {
            decision,
            policy: Uid { uid: id },
        })
        .collect()
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A stable pseudonym for a user identifier: the same user is the same pseudonym on every
/// node, so reports still count distinct users, while the record no longer names them.
pub(super) fn pseudonym(user: &str) -> String {
    format!("sha256:{}", short_hash(user.as_bytes()))
}

#[derive(Serialize)]
struct Record<'a> {
    class_uid: u32,
    category_uid: u32,
    activity_id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    activity_name: Option<&'a str>,
    type_uid: u32,
    severity_id: u32,
    time: u64,
    status_id: u32,
    status_code: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    status_detail: &'a str,
    action_id: u32,
    disposition_id: u32,
    metadata: Metadata<'a>,
    actor: ActorRecord<'a>,
    api: Api<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<[Resource<'a>; 1]>,
    src_endpoint: Endpoint<'a>,
    http_request: HttpRequest<'a>,
    unmapped: Unmapped<'a>,
}

/// OCSF Detection Finding (Findings category).
pub const DETECTION_FINDING: u32 = 2004;

/// Writes `finding` as one OCSF 1.8 Detection Finding line (`activity_id` 1, Create): the
/// signal as `finding_info` (its kind in `types` and `analytic`), the identity as the
/// evidence's actor, severity Medium (3) for every kind: a lead for a person, not a verdict.
pub fn write_finding(out: &mut Vec<u8>, finding: &crate::signals::Finding) {
    #[derive(Serialize)]
    struct FindingRecord<'a> {
        class_uid: u32,
        category_uid: u32,
        activity_id: u32,
        type_uid: u32,
        severity_id: u32,
        /// 1: New (a reviewer has not looked at it yet).
        status_id: u32,
        is_alert: bool,
        message: String,
        time: u64,
        metadata: Metadata<'a>,
        finding_info: FindingInfo<'a>,
        evidences: [Evidences<'a>; 1],
    }
    #[derive(Serialize)]
    struct FindingInfo<'a> {
        uid: &'a str,
        title: String,
        desc: &'a str,
        types: [&'static str; 1],
        analytic: Analytic,
    }
    #[derive(Serialize)]
    struct Analytic {
        name: &'static str,
        type_id: u32,
        r#type: &'static str,
    }
    #[derive(Serialize)]
    struct Evidences<'a> {
        actor: EvidenceActor<'a>,
    }
    #[derive(Serialize)]
    struct EvidenceActor<'a> {
        app_uid: &'a str,
    }
    let kind = finding.kind.as_str();
    let uid = crate::verdict::DecisionId::next().hex();
    let uid = uid.as_str();
    let record = FindingRecord {
        class_uid: DETECTION_FINDING,
        category_uid: 2,
        activity_id: 1,
        type_uid: DETECTION_FINDING * 100 + 1,
        severity_id: 3,
        status_id: 1,
        is_alert: true,
        message: format!("{kind}: {}: {}", finding.principal, finding.detail),
        time: finding.time_ms,
        metadata: Metadata {
            version: OCSF_VERSION,
            uid,
            profiles: &[],
            product: Product {
                name: "Tollgate",
                vendor_name: "Tollgate",
                version: env!("CARGO_PKG_VERSION"),
            },
        },
        finding_info: FindingInfo {
            uid,
            title: format!("{kind}: {}", finding.principal),
            desc: &finding.detail,
            types: [kind],
            analytic: Analytic {
                name: kind,
                type_id: 1,
                r#type: "Rule",
            },
        },
        evidences: [Evidences {
            actor: EvidenceActor {
                app_uid: &finding.principal,
            },
        }],
    };
    if serde_json::to_writer(&mut *out, &record).is_ok() {
        out.push(b'\n');
    }
}

#[derive(Serialize)]
struct Metadata<'a> {
    version: &'static str,
    uid: &'a str,
    profiles: &'static [&'static str],
    product: Product,
}

#[derive(Serialize)]
struct Product {
    name: &'static str,
    vendor_name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct ActorRecord<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    app_uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<User<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idp: Option<Idp<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<Session<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    authorizations: Vec<Authorization<'a>>,
}

#[derive(Serialize)]
struct User<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    type_id: u32,
}

#[derive(Serialize)]
struct Idp<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Session<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    credential_uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration_time: Option<i64>,
    is_remote: bool,
}

#[derive(Serialize)]
struct Authorization<'a> {
    decision: &'static str,
    policy: Uid<'a>,
}

#[derive(Serialize)]
struct Uid<'a> {
    uid: &'a str,
}

#[derive(Serialize)]
struct Api<'a> {
    operation: &'a str,
    response: Response<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<Token<'a>>,
}

#[derive(Serialize)]
struct Response<'a> {
    code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

#[derive(Serialize)]
struct Token<'a> {
    type_id: u32,
    r#type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    expiration_time: i64,
}

#[derive(Serialize)]
struct Resource<'a> {
    uid: &'a str,
    r#type: &'a str,
}

#[derive(Serialize)]
struct Endpoint<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'static str>,
}

#[derive(Serialize)]
struct HttpRequest<'a> {
    http_method: &'a str,
    url: Url<'a>,
}

#[derive(Serialize)]
struct Url<'a> {
    path: &'a str,
    hostname: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    query_string: Option<&'a str>,
}

#[derive(Serialize)]
struct Unmapped<'a> {
    tollgate: Tollgate<'a>,
}

#[derive(Serialize)]
struct Tollgate<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    access_mode: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trust_domain: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credentials_expire: Option<i64>,
    snapshot: Snapshot<'a>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    errors: &'a [String],
    #[serde(skip_serializing_if = "is_zero")]
    error_count: usize,
    elapsed_us: u64,
}

#[derive(Serialize)]
struct Snapshot<'a> {
    policies: &'a str,
    trust: &'a str,
}
