//! gRPC requests counted by service, method and code, and their latency, as
//! a tower layer around the client listener. Label values come only from
//! idreg's own service descriptors (anything else is "other"), so a client
//! sending made-up paths cannot grow the series.
//!
//! The code is the response's: `grpc-status` in its headers (an error, sent
//! headers-only) or OK. A stream that fails after it started counts as OK;
//! latency is to the response headers, which for unary calls is the call.
//!
//! Each method's series are looked up once, on its first call with a code,
//! and kept: a call then costs a map lookup by its path and atomic adds, no
//! label allocation and no lock on the metric families.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use prost::Message;

type Labels = Vec<(&'static str, String)>;

type Latency = Family<Labels, Histogram, fn() -> Histogram>;

/// gRPC status codes: 0 (OK) to 16 (UNAUTHENTICATED).
const CODES: usize = 17;

/// One method's series, created on first use and kept.
struct MethodSeries {
    service: String,
    method: String,
    latency: OnceLock<Histogram>,
    by_code: [OnceLock<Counter>; CODES],
}

impl MethodSeries {
    fn new(service: &str, method: &str) -> Arc<Self> {
        Arc::new(Self {
            service: service.to_owned(),
            method: method.to_owned(),
            latency: OnceLock::new(),
            by_code: std::array::from_fn(|_| OnceLock::new()),
        })
    }

    fn labels(&self) -> Labels {
        vec![
            ("service", self.service.clone()),
            ("method", self.method.clone()),
        ]
    }
}

#[derive(Clone)]
pub struct RequestMetrics {
    requests: Family<Labels, Counter>,
    latency: Latency,
    /// Every known method by its request path.
    known: Arc<HashMap<String, Arc<MethodSeries>>>,
    /// Anything else.
    other: Arc<MethodSeries>,
}

impl RequestMetrics {
    /// Metrics for the methods in `descriptor_sets` (encoded
    /// `FileDescriptorSet`s), registered in `registry`.
    pub fn new(registry: &mut Registry, descriptor_sets: &[&[u8]]) -> Self {
        let mut known = HashMap::new();
        for set in descriptor_sets {
            let Ok(set) = prost_types::FileDescriptorSet::decode(*set) else {
                continue;
            };
            for file in set.file {
                let package = file.package.unwrap_or_default();
                for service in file.service {
                    let name = service.name.unwrap_or_default();
                    for method in service.method {
                        let method = method.name.unwrap_or_default();
                        let service = format!("{package}.{name}");
                        known.insert(
                            format!("/{service}/{method}"),
                            MethodSeries::new(&service, &method),
                        );
                    }
                }
            }
        }
        let requests = Family::<Labels, Counter>::default();
        let latency = Latency::new_with_constructor(
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
            other: MethodSeries::new("other", "other"),
        }
    }

    /// The series of a request path: its method's, or "other".
    fn series(&self, path: &str) -> Arc<MethodSeries> {
        self.known.get(path).unwrap_or(&self.other).clone()
    }

    fn record(&self, series: &MethodSeries, code: tonic::Code, started: Instant) {
        series
            .latency
            .get_or_init(|| self.latency.get_or_create(&series.labels()).clone())
            .observe(started.elapsed().as_secs_f64());
        let slot = (code as usize).min(CODES - 1);
        series.by_code[slot]
            .get_or_init(|| {
                let mut labels = series.labels();
                labels.push(("code", format!("{code:?}")));
                self.requests.get_or_create(&labels).clone()
            })
            .inc();
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
        let series = self.metrics.series(req.uri().path());
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
            metrics.record(&series, code, started);
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
        let create = m.series("/idreg.v1.DeviceRegistry/CreateDevice");
        assert_eq!(
            (create.service.as_str(), create.method.as_str()),
            ("idreg.v1.DeviceRegistry", "CreateDevice")
        );
        assert_eq!(m.series("/idreg.v1.DeviceRegistry/Nope").method, "other");
        assert_eq!(m.series("/x/y").service, "other");
        for path in ["/evil.Path/12345", "/evil.Path/67890"] {
            m.record(&m.series(path), tonic::Code::Unimplemented, Instant::now());
        }
        // A method's series are created once and counted on after.
        for code in [tonic::Code::Ok, tonic::Code::Ok, tonic::Code::NotFound] {
            m.record(&create, code, Instant::now());
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                "idreg_grpc_requests_total{service=\"other\",method=\"other\",code=\"Unimplemented\"} 2"
            ),
            "{text}"
        );
        assert!(!text.contains("evil"), "{text}");
        for (code, n) in [("Ok", 2), ("NotFound", 1)] {
            let line = format!(
                "idreg_grpc_requests_total{{service=\"idreg.v1.DeviceRegistry\",method=\"CreateDevice\",code=\"{code}\"}} {n}"
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(
            text.contains("idreg_grpc_request_seconds_count{service=\"idreg.v1.DeviceRegistry\",method=\"CreateDevice\"} 3"),
            "{text}"
        );
    }
}
