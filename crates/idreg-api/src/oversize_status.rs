//! tonic refuses a request message above its decoding limit with
//! OUT_OF_RANGE; gRPC's own servers say RESOURCE_EXHAUSTED, which is what
//! clients retry-policies and operators expect. This layer rewrites that one
//! answer and names the setting that raises the limit. The message is refused
//! from its length prefix, before its body is buffered.

use std::task::{Context, Poll};

use tonic::{Code, Status};

/// What tonic's decoder says when a message is over the limit.
const TONIC_OVERSIZE: &str = "decoded message length too large";

#[derive(Clone, Copy, Default)]
pub struct OversizeStatus;

impl<S> tower::Layer<S> for OversizeStatus {
    type Service = OversizeStatusService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OversizeStatusService { inner }
    }
}

#[derive(Clone)]
pub struct OversizeStatusService<S> {
    inner: S,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for OversizeStatusService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let call = self.inner.call(req);
        Box::pin(async move {
            let mut response = call.await?;
            rewrite(response.headers_mut());
            Ok(response)
        })
    }
}

/// An error answer is headers only (tonic's `Status::into_http`), so the
/// status can be replaced in the headers.
fn rewrite(headers: &mut http::HeaderMap) {
    let Some(status) = Status::from_header_map(headers) else {
        return;
    };
    if status.code() != Code::OutOfRange || !status.message().contains(TONIC_OVERSIZE) {
        return;
    }
    let exhausted = Status::resource_exhausted(format!(
        "request message too large ({}); raise --grpc-max-message-bytes on the server, or send \
         less per message",
        status.message()
    ));
    // Only fails for metadata that cannot be a header; this status has none.
    let _ = exhausted.add_header(headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(headers: &http::HeaderMap) -> Status {
        Status::from_header_map(headers).unwrap()
    }

    #[test]
    fn only_the_oversize_answer_is_rewritten() {
        let mut oversize = Status::out_of_range(
            "Error, decoded message length too large: found 9000 bytes, the limit is: 4096 bytes",
        )
        .into_http::<()>();
        rewrite(oversize.headers_mut());
        let s = status_of(oversize.headers());
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(s.message().contains("--grpc-max-message-bytes"), "{s}");
        assert!(s.message().contains("9000"), "{s}");

        let mut other = Status::out_of_range("revision 3 is no longer kept").into_http::<()>();
        rewrite(other.headers_mut());
        assert_eq!(status_of(other.headers()).code(), Code::OutOfRange);

        let mut ok = http::Response::new(());
        rewrite(ok.headers_mut());
        assert!(Status::from_header_map(ok.headers()).is_none());
    }
}
