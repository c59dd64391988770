//! The tower layer in front of every gRPC service: reads who the caller is
//! from its TLS client certificate, checks [`access_policy`] for the method,
//! and hands the [`Caller`] to the handler as a request extension. Refused
//! requests never reach a service.
//!
//! A certificate is parsed once and remembered (bounded), since a client
//! sends many requests over one connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use idreg_core::{Caller, CertIdentity, Principal};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::access_policy::{self, Listener};

/// Certificates remembered; past it the memory starts again.
const CACHE_MAX: usize = 4096;

#[derive(Clone)]
pub struct CallerAuth {
    listener: Listener,
    insecure: bool,
    cache: Arc<Mutex<HashMap<Vec<u8>, Option<Caller>>>>,
}

impl CallerAuth {
    pub fn new(listener: Listener) -> Self {
        Self {
            listener,
            insecure: false,
            cache: Arc::default(),
        }
    }

    /// `--insecure`: no TLS, every caller may do everything.
    pub fn insecure(listener: Listener) -> Self {
        Self {
            insecure: true,
            ..Self::new(listener)
        }
    }

    /// The caller a leaf certificate (DER) names, if it names one this
    /// listener knows: a role on the client port, a node on the peer port.
    pub fn caller_of(&self, leaf: &[u8]) -> Option<Caller> {
        if let Some(c) = self.cache.lock().expect("cache lock").get(leaf) {
            return c.clone();
        }
        let caller = CertIdentity::from_der(leaf).ok().and_then(|id| {
            match (self.listener, id.node_id(), id.principal()) {
                (Listener::Peer, Some(node), _) => Some(Caller::Node(node)),
                (Listener::Client, _, Some(p)) => Some(Caller::Client(p)),
                (Listener::Client, Some(node), None) => Some(Caller::Node(node)),
                _ => None,
            }
        });
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(leaf.to_vec(), caller.clone());
        caller
    }

    fn caller<B>(&self, req: &http::Request<B>) -> Option<Caller> {
        if self.insecure {
            return Some(Caller::Insecure);
        }
        let certs = req
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|i| i.peer_certs())?;
        self.caller_of(certs.first()?.as_ref())
    }
}

impl<S> tower::Layer<S> for CallerAuth {
    type Service = CallerAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallerAuthService {
            auth: self.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct CallerAuthService<S> {
    auth: CallerAuth,
    inner: S,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for CallerAuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let caller = self.auth.caller(&req);
        match access_policy::check(self.auth.listener, req.uri().path(), caller.as_ref()) {
            Ok(()) => {
                if let Some(c) = caller {
                    req.extensions_mut().insert(c);
                }
                Box::pin(self.inner.call(req))
            }
            Err(status) => {
                tracing::debug!(path = req.uri().path(), "refused: {}", status.message());
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// The principal a write is recorded under: the caller this layer put on the
/// request (every write method needs a role, so it is there).
pub fn author<T>(req: &tonic::Request<T>) -> Principal {
    req.extensions()
        .get::<Caller>()
        .map(Caller::principal)
        .unwrap_or_else(|| Principal {
            name: "unauthenticated".into(),
            role: idreg_core::Role::Reader,
        })
}
