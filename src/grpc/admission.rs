//! Admission for Checks: one limit on Checks in flight for the whole process (every listener
//! shares it) and a deadline per Check. A Check shed at the limit or past its deadline is an
//! error to Envoy, which denies the request (`failure_mode_allow: false`); each one is also
//! counted, logged and audited here with the reason code that deny stands for, so overload is
//! never silent.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;
use tonic::codegen::http;
use tonic::server::NamedService;

use crate::authz::Authorizer;
use crate::verdict::ReasonCode;

/// The process-wide limit and the per-Check deadline; clones share the limit.
#[derive(Debug, Clone)]
pub struct Admission {
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    deadline: Duration,
    authorizer: Option<Arc<Authorizer>>,
}

impl Admission {
    /// At most `max_in_flight` Checks at once across all listeners, each answered within
    /// `deadline`.
    pub fn new(max_in_flight: usize, deadline: Duration) -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(max_in_flight.min(Semaphore::MAX_PERMITS))),
            max_in_flight,
            deadline,
            authorizer: None,
        }
    }

    /// Records every shed and timed-out Check through `authorizer` (metrics, audit, log).
    pub fn recorded_by(mut self, authorizer: Arc<Authorizer>) -> Self {
        self.authorizer = Some(authorizer);
        self
    }

    /// Wraps a gRPC service (the ext_authz server) in this admission.
    pub fn wrap<S>(&self, inner: S) -> Admitted<S> {
        Admitted {
            inner,
            admission: self.clone(),
        }
    }

    fn refuse(&self, reason: ReasonCode, message: String) {
        if let Some(authorizer) = &self.authorizer {
            authorizer.refuse(reason, message);
        }
    }
}

/// A service behind [`Admission`].
#[derive(Debug, Clone)]
pub struct Admitted<S> {
    inner: S,
    admission: Admission,
}

impl<S: NamedService> NamedService for Admitted<S> {
    const NAME: &'static str = S::NAME;
}

type Answer = http::Response<tonic::body::Body>;

impl<S, B> tower::Service<http::Request<B>> for Admitted<S>
where
    S: tower::Service<http::Request<B>, Response = Answer, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Answer;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let admission = self.admission.clone();
        let Ok(permit) = admission.in_flight.clone().try_acquire_owned() else {
            admission.refuse(
                ReasonCode::Overloaded,
                format!(
                    "{} Checks already in flight (server.max_concurrent_requests)",
                    admission.max_in_flight
                ),
            );
            let shed = tonic::Status::unavailable("overloaded").into_http();
            return Box::pin(std::future::ready(Ok(shed)));
        };
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answered = tokio::time::timeout(admission.deadline, answer).await;
            drop(permit);
            match answered {
                Ok(answer) => answer,
                Err(_) => {
                    admission.refuse(
                        ReasonCode::Timeout,
                        format!(
                            "no answer within {} ms (server.request_timeout_ms)",
                            admission.deadline.as_millis()
                        ),
                    );
                    Ok(tonic::Status::deadline_exceeded("timeout").into_http())
                }
            }
        })
    }
}
