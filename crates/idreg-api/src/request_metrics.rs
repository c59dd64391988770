//! gRPC requests counted by service, method and code, and their latency, as
//! a tower layer around the client listener. Label values come only from
//! idreg's own service descriptors (anything else is "other"), so a client
//! sending made-up paths cannot grow the series.
//!
//! The code is the response's: `grpc-status` in its headers (an error, sent
//! headers-only) or OK. A stream that fails after it started counts as OK;
//! latency is to the response headers, which for unary calls is the call.

use std::collections::HashSet;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use prost::Message;

type Labels = Vec<(&'static str, String)>;

#[derive(Clone)]
pub struct RequestMetrics {
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram>,
    known: Arc<HashSet<String>>,
}

impl RequestMetrics {
    /// Metrics for the methods in `descriptor_sets` (encoded
    /// `FileDescriptorSet`s), registered in `registry`.
    pub fn new(registry: &mut Registry, descriptor_sets: &[&[u8]]) -> Self {
        let mut known = HashSet::new();
        for set in descriptor_sets {
            let Ok(set) = prost_types::FileDescriptorSet::decode(*set) else {
                continue;
            };
            for file in set.file {
                let package = file.package.unwrap_or_default();
                for service in file.service {
                    let name = service.name.unwrap_or_default();
                    for method in service.method {
                        known.insert(format!(
                            "/{package}.{name}/{}",
                            method.name.unwrap_or_default()
                        ));
                    }
                }
            }
        }
        let requests = Family::<Labels, Counter>::default();
        let latency = Family::<Labels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0001, 2.0, 16))) as fn() -> Histogram,
        );
        registry.register(
            "idreg_grpc_requests",
            "gRPC requests by service, method and code",
            requests.clone(),
        );
        registry.register(
            "idreg_grpc_request_seconds",
            "gRPC request latency to the response headers, by service and method",
            latency.clone(),
        );
        Self {
            requests,
            latency,
            known: Arc::new(known),
        }
    }

    /// (service, method) of a request path, "other" for unknown ones.
    fn name(&self, path: &str) -> (String, String) {
        match path.trim_start_matches('/').split_once('/') {
            Some((service, method)) if self.known.contains(path) => {
                (service.to_owned(), method.to_owned())
            }
            _ => ("other".into(), "other".into()),
        }
    }

    fn record(&self, path: &str, code: tonic::Code, started: Instant) {
        let (service, method) = self.name(path);
        let base: Labels = vec![("service", service), ("method", method)];
        self.latency
            .get_or_create(&base)
            .observe(started.elapsed().as_secs_f64());
        let mut with_code = base;
        with_code.push(("code", format!("{code:?}")));
        self.requests.get_or_create(&with_code).inc();
    }
}

impl<S> tower::Layer<S> for RequestMetrics {
    type Service = RequestMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetricsService {
            inner,
            metrics: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RequestMetricsService<S> {
    inner: S,
    metrics: RequestMetrics,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for RequestMetricsService<S>
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
        let path = req.uri().path().to_owned();
        let started = Instant::now();
        let metrics = self.metrics.clone();
        let call = self.inner.call(req);
        Box::pin(async move {
            let response = call.await;
            let code = match &response {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from_i32),
                Err(_) => tonic::Code::Unavailable,
            };
            metrics.record(&path, code, started);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_methods_become_labels() {
        let mut registry = Registry::default();
        let m = RequestMetrics::new(&mut registry, &[idreg_proto::FILE_DESCRIPTOR_SET]);
        assert_eq!(
            m.name("/idreg.v1.DeviceRegistry/CreateDevice"),
            ("idreg.v1.DeviceRegistry".into(), "CreateDevice".into())
        );
        assert_eq!(
            m.name("/idreg.v1.DeviceRegistry/Nope"),
            ("other".into(), "other".into())
        );
        assert_eq!(m.name("/x/y"), ("other".into(), "other".into()));
        m.record(
            "/evil.Path/12345",
            tonic::Code::Unimplemented,
            Instant::now(),
        );
        m.record(
            "/evil.Path/67890",
            tonic::Code::Unimplemented,
            Instant::now(),
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                "idreg_grpc_requests_total{service=\"other\",method=\"other\",code=\"Unimplemented\"} 2"
            ),
            "{text}"
        );
        assert!(!text.contains("evil"), "{text}");
    }
}
