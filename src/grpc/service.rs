//! The ext_authz service as tonic serves it: `envoy.service.auth.v3.Authorization/Check`
//! routed to [`CheckService`], whose answer is already protobuf bytes ([`check::encode`]).
//!
//! envoy-types' generated server would need a `CheckRequest` and a `CheckResponse` message for
//! every Check and boxes two futures per Check (its own and `async_trait`'s) around a decision
//! that is synchronous; this one hands the request's bytes to [`CheckService::answer_message`]
//! (which reads them where they lie), writes the answer's bytes as they are, and boxes one
//! future.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use envoy_types::pb::envoy::service::auth::v3::authorization_server::SERVICE_NAME;
use prost::bytes::{Buf, Bytes};
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{Body as HttpBody, StdError, http};
use tonic::server::{NamedService, UnaryService};

use super::check::{self, CheckService};

/// The one method this service has.
const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// The ext_authz gRPC service.
#[derive(Debug, Clone)]
pub struct CheckServer {
    service: CheckService,
}

impl CheckServer {
    /// Serves `service`.
    pub fn new(service: CheckService) -> Self {
        Self { service }
    }
}

impl NamedService for CheckServer {
    const NAME: &'static str = SERVICE_NAME;
}

type Answer = http::Response<Body>;

impl<B> tower::Service<http::Request<B>> for CheckServer
where
    B: HttpBody + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = Answer;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Answer, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != CHECK_PATH {
            // What a generated server answers for a method it does not have.
            return Box::pin(ready(Ok(tonic::Status::unimplemented("").into_http())));
        }
        let method = Check(self.service.clone());
        Box::pin(async move {
            Ok(tonic::server::Grpc::new(CheckCodec)
                .unary(method, request)
                .await)
        })
    }
}

/// `Check` as tonic's unary method: answered in the poll that has the message.
struct Check(CheckService);

impl UnaryService<Bytes> for Check {
    type Response = check::Encoded;
    type Future = Ready<Result<tonic::Response<check::Encoded>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        ready(Ok(tonic::Response::new(
            self.0.answer_message(request.get_ref()),
        )))
    }
}

/// Requests taken as their bytes; answers written as the bytes they already are.
#[derive(Debug, Default)]
struct CheckCodec;

impl Codec for CheckCodec {
    type Encode = check::Encoded;
    type Decode = Bytes;
    type Encoder = EncodedWriter;
    type Decoder = MessageBytes;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedWriter
    }

    fn decoder(&mut self) -> Self::Decoder {
        MessageBytes
    }
}

/// Takes a request message as its bytes (split from tonic's buffer, not copied).
#[derive(Debug)]
struct MessageBytes;

impl Decoder for MessageBytes {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Self::Error> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Copies an encoded answer into the gRPC frame.
#[derive(Debug)]
struct EncodedWriter;

impl Encoder for EncodedWriter {
    type Item = check::Encoded;
    type Error = tonic::Status;

    fn encode(&mut self, item: check::Encoded, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        prost::bytes::BufMut::put_slice(dst, &item.0);
        Ok(())
    }
}
