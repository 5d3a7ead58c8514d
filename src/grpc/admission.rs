//! Admission for Checks: one limit on Checks in flight for the whole process (every listener
//! shares it) and a deadline per Check. A Check shed at the limit or past its deadline is an
//! error to Envoy, which denies the request (`failure_mode_allow: false`); each one is also
//! counted, logged and audited here with the reason code that deny stands for, so overload is
//! never silent.
//!
//! Admission sits on every request, so it is built to cost next to nothing when nothing is
//! wrong: the limit is one atomic counter (a semaphore's release takes a lock), the future is
//! a concrete type (no box), and the deadline timer is armed only when a Check has to wait,
//! for its body or anything else. A decision itself is synchronous: once the message is in, the
//! Check completes in the poll that reads it, and a timer could not have interrupted it anyway.
//! A stalled client, whose body never arrives, still meets the deadline.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tonic::codegen::http;
use tonic::server::NamedService;

use crate::authz::Authorizer;
use crate::verdict::ReasonCode;

/// The process-wide limit and the per-Check deadline; clones share the limit.
#[derive(Debug, Clone)]
pub struct Admission {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    in_flight: AtomicUsize,
    max_in_flight: usize,
    deadline: Duration,
    /// Set once, by [`Admission::recorded_by`], for every clone at once.
    authorizer: OnceLock<Arc<Authorizer>>,
}

impl Admission {
    /// At most `max_in_flight` Checks at once across all listeners, each answered within
    /// `deadline`.
    pub fn new(max_in_flight: usize, deadline: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                in_flight: AtomicUsize::new(0),
                max_in_flight,
                deadline,
                authorizer: OnceLock::new(),
            }),
        }
    }

    /// Records every shed and timed-out Check through `authorizer` (metrics, audit, log), for
    /// this admission and every clone of it, which share one limit; the first authorizer given
    /// stays.
    pub fn recorded_by(self, authorizer: Arc<Authorizer>) -> Self {
        let _ = self.shared.authorizer.set(authorizer);
        self
    }

    /// Wraps a gRPC service (the ext_authz server) in this admission.
    pub fn wrap<S>(&self, inner: S) -> Admitted<S> {
        Admitted {
            inner,
            admission: self.clone(),
        }
    }

    /// A place for one request of another front door (HTTP), held until the slot drops; `None`
    /// at the limit (the caller records the shed as its own deny, to answer with it).
    pub fn enter(&self) -> Option<Slot> {
        self.admit()
    }

    /// The limit, for messages.
    pub fn limit(&self) -> usize {
        self.shared.max_in_flight
    }

    /// The per-request deadline.
    pub fn deadline(&self) -> Duration {
        self.shared.deadline
    }

    /// Checks in flight now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// A slot for one more Check, or `None` at the limit. Compare-and-swap rather than add
    /// then undo: a Check refused at the limit never raises the count, even for an instant,
    /// so it cannot make another Check look over the limit while a place is free.
    fn admit(&self) -> Option<Slot> {
        let shared = &self.shared;
        shared
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < shared.max_in_flight).then_some(n + 1)
            })
            .ok()?;
        Some(Slot {
            shared: shared.clone(),
        })
    }
}

impl Shared {
    fn refuse(&self, reason: ReasonCode, message: String) {
        if let Some(authorizer) = self.authorizer.get() {
            authorizer.refuse(reason, message);
        }
    }
}

/// One admitted Check; frees its place in the limit when dropped, however the Check ends.
#[derive(Debug)]
pub struct Slot {
    shared: Arc<Shared>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
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
    S::Future: Unpin,
{
    type Response = Answer;
    type Error = Infallible;
    type Future = Admit<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let Some(slot) = self.admission.admit() else {
            let shared = &self.admission.shared;
            shared.refuse(
                ReasonCode::Overloaded,
                format!(
                    "{} Checks already in flight (server.max_concurrent_requests)",
                    shared.max_in_flight
                ),
            );
            return Admit(State::Shed);
        };
        Admit(State::Answering {
            answer: self.inner.call(request),
            slot,
            admitted: Instant::now(),
            timer: None,
        })
    }
}

/// The answer to one Check: the inner service's, or an error status when shed or late.
#[derive(Debug)]
pub struct Admit<F>(State<F>);

#[derive(Debug)]
enum State<F> {
    /// Refused at the limit.
    Shed,
    /// Admitted; being answered.
    Answering {
        /// The inner service's answer.
        answer: F,
        /// Holds the Check's place in the limit.
        slot: Slot,
        /// When it was admitted; the deadline counts from here.
        admitted: Instant,
        /// Armed the first time the answer is not ready at once (boxed: `Sleep` is `!Unpin`,
        /// and this path is the rare one).
        timer: Option<Pin<Box<Sleep>>>,
    },
    /// Answered; polled again.
    Done,
}

impl<F> Future for Admit<F>
where
    F: Future<Output = Result<Answer, Infallible>> + Unpin,
{
    type Output = Result<Answer, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut self.get_mut().0;
        let State::Answering {
            answer,
            slot,
            admitted,
            timer,
        } = this
        else {
            if matches!(this, State::Shed) {
                *this = State::Done;
                return Poll::Ready(Ok(tonic::Status::unavailable("overloaded").into_http()));
            }
            return Poll::Pending;
        };
        if let Poll::Ready(answered) = Pin::new(answer).poll(cx) {
            *this = State::Done;
            return Poll::Ready(answered);
        }
        let deadline = slot.shared.deadline;
        // A deadline too far to represent is none: the Check waits for its answer.
        let Some(due) = admitted.checked_add(deadline) else {
            return Poll::Pending;
        };
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        slot.shared.refuse(
            ReasonCode::Timeout,
            format!(
                "no answer within {} ms (server.request_timeout_ms)",
                deadline.as_millis()
            ),
        );
        *this = State::Done;
        Poll::Ready(Ok(tonic::Status::deadline_exceeded("timeout").into_http()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Reply = Pin<Box<dyn Future<Output = Result<Answer, Infallible>> + Send>>;

    /// A service whose answers are ready at once, or never.
    #[derive(Clone)]
    struct Inner {
        stall: bool,
    }

    impl tower::Service<http::Request<()>> for Inner {
        type Response = Answer;
        type Error = Infallible;
        type Future = Reply;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Reply {
            if self.stall {
                Box::pin(std::future::pending())
            } else {
                Box::pin(std::future::ready(Ok(http::Response::new(
                    tonic::body::Body::empty(),
                ))))
            }
        }
    }

    fn grpc_status(answer: &Answer) -> Option<&str> {
        answer
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_sheds_and_every_end_frees_its_slot() {
        use tower::Service;
        let admission = Admission::new(2, Duration::from_millis(100));
        let mut stalled = admission.wrap(Inner { stall: true });
        let mut ready = admission.wrap(Inner { stall: false });
        let first = stalled.call(http::Request::new(()));
        let second = stalled.call(http::Request::new(()));
        assert_eq!(admission.in_flight(), 2);
        let shed = ready.call(http::Request::new(())).await.unwrap();
        assert_eq!(grpc_status(&shed), Some("14"), "UNAVAILABLE at the limit");
        assert_eq!(admission.in_flight(), 2, "a shed Check holds no slot");
        // A late Check ends at its deadline and frees its slot...
        let late = first.await.unwrap();
        assert_eq!(grpc_status(&late), Some("4"), "DEADLINE_EXCEEDED");
        assert_eq!(admission.in_flight(), 1);
        // ...and so does one dropped unanswered (a client reset).
        drop(second);
        assert_eq!(admission.in_flight(), 0);
        let answered = ready.call(http::Request::new(())).await.unwrap();
        assert_eq!(grpc_status(&answered), None, "the inner answer, untouched");
        assert_eq!(admission.in_flight(), 0);
    }

    /// Review finding: `recorded_by` made a new counter, so a clone taken before it counted
    /// apart and the process-wide limit could be exceeded.
    #[tokio::test(start_paused = true)]
    async fn recording_keeps_one_limit_for_every_clone() {
        use tower::Service;
        let (_, snapshot) = crate::config::load(&crate::config::ConfigSource::Embedded, 1).unwrap();
        let authorizer = Arc::new(Authorizer::offline(snapshot));
        let plain = Admission::new(1, Duration::from_millis(100));
        let recorded = plain.clone().recorded_by(authorizer);
        let mut first = plain.wrap(Inner { stall: true });
        let mut second = recorded.wrap(Inner { stall: false });
        let _held = first.call(http::Request::new(()));
        let shed = second.call(http::Request::new(())).await.unwrap();
        assert_eq!(
            grpc_status(&shed),
            Some("14"),
            "one limit, not one per clone"
        );
    }

    /// Review finding: the deadline was `admitted + deadline` unchecked, which panics for a
    /// deadline too far to represent.
    #[tokio::test(start_paused = true)]
    async fn a_deadline_too_far_to_represent_is_no_deadline_not_a_panic() {
        use tower::Service;
        let admission = Admission::new(1, Duration::MAX);
        let mut stalled = admission.wrap(Inner { stall: true });
        let waited = tokio::time::timeout(
            Duration::from_secs(3600),
            stalled.call(http::Request::new(())),
        )
        .await;
        assert!(waited.is_err(), "still waiting after an hour");
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_counts_from_admission_not_from_the_first_wait() {
        use tower::Service;
        let admission = Admission::new(1, Duration::from_millis(100));
        let mut stalled = admission.wrap(Inner { stall: true });
        let started = Instant::now();
        let late = stalled.call(http::Request::new(()));
        tokio::time::advance(Duration::from_millis(60)).await;
        let answer = late.await.unwrap();
        assert_eq!(grpc_status(&answer), Some("4"));
        assert_eq!(started.elapsed(), Duration::from_millis(100));
    }
}
