//! The access review: a [`Summary`] of decisions held against the estate that made them
//! (policies, entities, routes). Inventory, granted versus used, policies and what they
//! determined, dormant and risky identities.

use std::collections::{BTreeMap, BTreeSet};

use cedar_policy::{EntityTypeName, EvalResult};
use serde::Serialize;

use super::granted::{Grant, granted};
use super::read::ReadNotes;
use crate::inventory::{IdentitySummary, Kind, Series, Summary, Usage};
use crate::mapping::routes::Routes;
use crate::policy::PolicyStore;

/// What the review flags.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// An app-only identity granted more resource types than this is flagged as broad.
    pub max_services: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self { max_services: 3 }
    }
}

/// The review, as the terminal table, JSON and HTML show it.
#[derive(Debug, Clone, Serialize)]
pub struct Review {
    /// The window asked for, Unix milliseconds (`null` when open).
    pub since_ms: Option<u64>,
    /// See `since_ms`.
    pub until_ms: Option<u64>,
    /// Earliest and latest record counted.
    pub first_ms: u64,
    /// See `first_ms`.
    pub last_ms: u64,
    /// Records counted.
    pub records: u64,
    /// Lines that were not records, and where the first were.
    pub corrupt: u64,
    /// See `corrupt`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub corrupt_at: Vec<String>,
    /// Records outside the window.
    pub outside_window: u64,
    /// Every identity seen or declared.
    pub inventory: Vec<InventoryRow>,
    /// Per identity: granted versus used.
    pub least_privilege: Vec<Privileges>,
    /// Every policy, and the decisions it determined.
    pub policies: Vec<PolicyRow>,
    /// Identities with grants and no call in the window.
    pub dormant: Vec<String>,
    /// App-only identities granted more resource types than the threshold.
    pub broad: Vec<Broad>,
    /// Identities whose every call was denied.
    pub denied_only: Vec<String>,
    /// Decisions for callers never verified, by reason.
    pub unverified: BTreeMap<String, u64>,
    /// Width of the timeline buckets (each identity's `series`), milliseconds.
    pub bucket_ms: u64,
    /// Calls and denials of unverified callers over time.
    pub unverified_series: Series,
    /// The threshold behind `broad`.
    pub max_services: usize,
}

/// One identity in the inventory.
#[derive(Debug, Clone, Serialize)]
pub struct InventoryRow {
    /// The Cedar principal (`App` id).
    pub principal: String,
    /// Its `App` entity is declared in the estate's entities.
    pub declared: bool,
    /// SPIFFE trust domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
    /// The entity's `owner` attribute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The groups it is in (entity ancestors of type `Group`).
    pub groups: Vec<String>,
    /// What it did (empty when never seen); its `kind` is `workload`, `client` (a token
    /// alone) or `delegated app` (acted for users).
    #[serde(flatten)]
    pub seen: IdentitySummary,
}

/// Granted versus used, for one identity.
#[derive(Debug, Clone, Serialize)]
pub struct Privileges {
    /// The Cedar principal.
    pub principal: String,
    /// Each (action, resource type) a route can ask for that is granted or was asked for.
    pub pairs: Vec<PairRow>,
}

/// One (action, resource type) for one identity.
#[derive(Debug, Clone, Serialize)]
pub struct PairRow {
    /// Cedar action.
    pub action: String,
    /// Resource entity type.
    pub resource_type: String,
    /// How the policies grant it, if they do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<Grant>,
    /// What was asked for, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used: Option<Usage>,
    /// Where the granting policies are, `file:line`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<String>,
}

impl PairRow {
    /// Granted (on any condition) and never used in the window: never asked for, or asked
    /// for only in vain (every call denied, the grant's condition never held).
    pub fn unused(&self) -> bool {
        self.grant.is_some() && self.used.is_none_or(|u| u.allowed == 0)
    }
}

/// One policy.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyRow {
    /// Its id.
    pub id: String,
    /// `permit` or `forbid`.
    pub effect: &'static str,
    /// Where it is, `file:line`.
    pub location: String,
    /// Decisions it determined in the window.
    pub determined: u64,
}

/// An app-only identity with broad grants.
#[derive(Debug, Clone, Serialize)]
pub struct Broad {
    /// The Cedar principal.
    pub principal: String,
    /// The resource types it is granted.
    pub resource_types: Vec<String>,
}

/// Reviews `summary` against the estate.
pub fn review(
    summary: &Summary,
    notes: &ReadNotes,
    store: &PolicyStore,
    routes: &Routes,
    window: (Option<u64>, Option<u64>),
    thresholds: Thresholds,
) -> Review {
    let declared = declared_apps(store);
    let named = named_in_policies(store);
    let mut principals: BTreeSet<&str> = summary.identities.keys().map(String::as_str).collect();
    principals.extend(declared.keys().map(String::as_str));
    // An identity only a policy names (no entity, never seen) is reviewed too: its grant is
    // exactly what "dormant" is for.
    principals.extend(named.iter().map(String::as_str));
    let cedar = cedar_policy::Authorizer::new();
    let pairs = routes.pairs();

    let mut inventory = Vec::with_capacity(principals.len());
    let mut least_privilege = Vec::with_capacity(principals.len());
    let (mut dormant, mut broad, mut denied_only) = (Vec::new(), Vec::new(), Vec::new());
    for principal in principals {
        let mut seen = summary
            .identities
            .get(principal)
            .cloned()
            .unwrap_or_default();
        let entity = declared.get(principal);
        let mut rows: Vec<PairRow> = pairs
            .iter()
            .map(|(action, resource_type)| {
                let grant = granted(store, &cedar, principal, action, resource_type);
                PairRow {
                    action: (*action).to_owned(),
                    resource_type: (*resource_type).to_owned(),
                    locations: grant
                        .iter()
                        .flat_map(|g| g.policies())
                        .filter_map(|id| store.source(id))
                        .map(|s| format!("{}:{}", s.file, s.line))
                        .collect(),
                    used: seen
                        .used
                        .get(crate::inventory::pair(action, resource_type).as_str())
                        .copied(),
                    grant,
                }
            })
            .filter(|row| row.grant.is_some() || row.used.is_some())
            .collect();
        // Asked for, though no route maps to it now (the routes changed since).
        for (key, usage) in &seen.used {
            let (action, resource_type) = split_pair(key);
            if !pairs.contains(&(action, resource_type)) {
                rows.push(PairRow {
                    action: action.to_owned(),
                    resource_type: resource_type.to_owned(),
                    grant: None,
                    used: Some(*usage),
                    locations: Vec::new(),
                });
            }
        }
        let granted_types: BTreeSet<&str> = rows
            .iter()
            .filter(|r| r.grant.is_some())
            .map(|r| r.resource_type.as_str())
            .collect();
        if !granted_types.is_empty() && seen.calls == 0 {
            dormant.push(principal.to_owned());
        }
        if seen.delegated == 0 && granted_types.len() > thresholds.max_services {
            broad.push(Broad {
                principal: principal.to_owned(),
                resource_types: granted_types.iter().map(|t| (*t).to_owned()).collect(),
            });
        }
        if seen.calls > 0 && seen.denied() == seen.calls {
            denied_only.push(principal.to_owned());
        }
        let kind = if seen.calls == 0 {
            if principal.contains('#') {
                Kind::Client
            } else {
                Kind::Workload
            }
        } else if seen.delegated > 0 {
            Kind::DelegatedApp
        } else {
            seen.kind
        };
        seen.kind = kind;
        inventory.push(InventoryRow {
            principal: principal.to_owned(),
            declared: entity.is_some(),
            // Taken from the summary, which is flattened into the row: named once.
            trust_domain: seen.trust_domain.take().or_else(|| {
                principal
                    .strip_prefix("spiffe://")
                    .and_then(|rest| rest.split('/').next())
                    .map(str::to_owned)
            }),
            owner: entity.and_then(|e| e.owner.clone()),
            groups: entity.map(|e| e.groups.clone()).unwrap_or_default(),
            seen,
        });
        least_privilege.push(Privileges {
            principal: principal.to_owned(),
            pairs: rows,
        });
    }

    let mut policies: Vec<((String, usize), PolicyRow)> = store
        .policies()
        .map(|p| {
            let id = p.id().to_string();
            let at = store
                .source(&id)
                .map(|s| (s.file.clone(), s.line))
                .unwrap_or_default();
            let row = PolicyRow {
                effect: match p.effect() {
                    cedar_policy::Effect::Permit => "permit",
                    cedar_policy::Effect::Forbid => "forbid",
                },
                location: format!("{}:{}", at.0, at.1),
                determined: summary.policies.get(&id).copied().unwrap_or(0),
                id,
            };
            (at, row)
        })
        .collect();
    // In file order, as an author reads them.
    policies.sort_by(|a, b| a.0.cmp(&b.0));
    let policies = policies.into_iter().map(|(_, row)| row).collect();

    Review {
        since_ms: window.0,
        until_ms: window.1,
        first_ms: summary.first_ms,
        last_ms: summary.last_ms,
        records: summary.records,
        corrupt: summary.corrupt,
        corrupt_at: notes.corrupt_at.clone(),
        outside_window: notes.outside_window,
        inventory,
        least_privilege,
        policies,
        dormant,
        broad,
        denied_only,
        unverified: summary.unverified.clone(),
        bucket_ms: summary.bucket_ms,
        unverified_series: summary.unverified_series.clone(),
        max_services: thresholds.max_services,
    }
}

/// A `used` key back into action and resource type.
fn split_pair(key: &str) -> (&str, &str) {
    // An entity type has no space; an action id may.
    key.rsplit_once(' ').unwrap_or((key, ""))
}

/// The `App`s policies name in their scope (`principal == App::"…"`).
fn named_in_policies(store: &PolicyStore) -> BTreeSet<String> {
    let Ok(app) = "App".parse::<EntityTypeName>() else {
        return BTreeSet::new();
    };
    store
        .policies()
        .filter_map(|p| match p.principal_constraint() {
            cedar_policy::PrincipalConstraint::Eq(uid) if uid.type_name() == &app => {
                Some(uid.id().unescaped().to_owned())
            }
            _ => None,
        })
        .collect()
}

/// An `App` entity's facts for the inventory.
struct Declared {
    owner: Option<String>,
    groups: Vec<String>,
}

fn declared_apps(store: &PolicyStore) -> BTreeMap<String, Declared> {
    let Ok(app) = "App".parse::<EntityTypeName>() else {
        return BTreeMap::new();
    };
    let Ok(group) = "Group".parse::<EntityTypeName>() else {
        return BTreeMap::new();
    };
    store
        .entities
        .iter()
        .filter(|e| e.uid().type_name() == &app)
        .map(|e| {
            let owner = match e.attr("owner") {
                Some(Ok(EvalResult::String(owner))) => Some(owner),
                _ => None,
            };
            let mut groups: Vec<String> = store
                .entities
                .ancestors(&e.uid())
                .into_iter()
                .flatten()
                .filter(|a| a.type_name() == &group)
                .map(|a| a.id().unescaped().to_owned())
                .collect();
            groups.sort();
            (
                e.uid().id().unescaped().to_owned(),
                Declared { owner, groups },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review finding: a granted permission asked for only ever in vain (every call denied:
    /// its condition never held) was not a candidate to remove.
    #[test]
    fn a_permission_only_ever_denied_is_unused() {
        let row = PairRow {
            action: "a".into(),
            resource_type: "T".into(),
            grant: Some(Grant::Conditional {
                policies: vec!["p".into()],
                forbids: vec![],
            }),
            used: Some(Usage {
                calls: 10,
                allowed: 0,
                last_ms: 1,
            }),
            locations: vec![],
        };
        assert!(row.unused());
    }

    /// Review finding: an action id with a space was split at the wrong space.
    #[test]
    fn a_pair_splits_at_the_last_space() {
        assert_eq!(split_pair("read orders Order"), ("read orders", "Order"));
    }
}
