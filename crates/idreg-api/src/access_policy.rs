//! Which caller may call which gRPC method: one table for the client
//! listener, one rule for the peer listener. Pure: a path and a caller in,
//! a verdict out; the [`crate::caller_auth`] layer applies it to every request.

use idreg_core::{Caller, Role};
use tonic::Status;

/// What a method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anyone, even without a certificate (health, for probes).
    Nobody,
    Role(Role),
    /// A node certificate (the peer listener's node-to-node methods).
    Node,
}

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Client,
    Peer,
}

/// What calling `path` (`/package.Service/Method`) on `listener` needs.
/// Anything not named needs the most: admin, or a node on the peer port.
pub fn need(listener: Listener, path: &str) -> Need {
    let (service, method) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or((path, ""));
    if service == "grpc.health.v1.Health" {
        return Need::Nobody;
    }
    if listener == Listener::Peer {
        return Need::Node;
    }
    match (service, method) {
        (
            "idreg.v1.DeviceRegistry",
            "GetDevice" | "ListDevices" | "WatchDevices" | "GetDeviceHistory" | "GetTenantPolicy",
        )
        | ("idreg.v1.Sessions", "ListSessions" | "GetFrontStats" | "ListClones")
        | ("idreg.v1.Cluster", "GetStatus" | "ExportRevocationList")
        | ("idreg.v1.Enrollment", "GetDeviceCa" | "GetEnrollmentGroup" | "ListEnrollmentGroups")
        | (
            "idreg.v1.Firmware",
            "ListSigners" | "ListReleases" | "ListRollouts" | "GetRolloutStatus" | "Report",
        )
        | ("grpc.reflection.v1.ServerReflection" | "grpc.reflection.v1alpha.ServerReflection", _) => {
            Need::Role(Role::Reader)
        }
        (
            "idreg.v1.DeviceRegistry",
            "CreateDevice" | "UpdateDevice" | "RevokeDevice" | "DeleteDevice" | "ImportDevices"
            | "RotatePsk" | "SetTenantPolicy",
        )
        | (
            "idreg.v1.Firmware",
            "CheckManifest" | "SetRollout" | "SetRolloutPaused" | "RemoveRollout",
        )
        | (
            "idreg.v1.Enrollment",
            "CreateEnrollmentGroup" | "SetEnrollmentGroupEnabled" | "DeleteEnrollmentGroup",
        ) => Need::Role(Role::Operator),
        _ => Need::Role(Role::Admin),
    }
}

/// Whether `caller` (None: no certificate) may call `path` on `listener`.
pub fn check(listener: Listener, path: &str, caller: Option<&Caller>) -> Result<(), Status> {
    match (need(listener, path), caller) {
        (Need::Nobody, _) | (_, Some(Caller::Insecure)) => Ok(()),
        (Need::Node, Some(Caller::Node(_))) => Ok(()),
        (Need::Node, _) => Err(Status::permission_denied(format!(
            "{path} is for cluster nodes: present a node certificate (urn:idreg:node:N)"
        ))),
        (Need::Role(_), None) => Err(Status::unauthenticated(
            "no client certificate: present one issued by the cluster's client CA \
             (idreg pki client NAME --role ROLE)",
        )),
        (Need::Role(need), Some(Caller::Client(p))) if p.role >= need => Ok(()),
        (Need::Role(need), Some(Caller::Client(p))) => Err(Status::permission_denied(format!(
            "{path} needs role {need}; {} has role {}",
            p.name, p.role
        ))),
        (Need::Role(need), Some(Caller::Node(id))) => Err(Status::permission_denied(format!(
            "{path} needs role {need}; node {id}'s certificate carries no role"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idreg_core::Principal;

    fn client(role: Role) -> Caller {
        Caller::Client(Principal {
            name: "t".into(),
            role,
        })
    }

    #[test]
    fn roles_nest_over_the_client_api() {
        let cases = [
            ("/idreg.v1.DeviceRegistry/GetDevice", Role::Reader),
            ("/idreg.v1.DeviceRegistry/WatchDevices", Role::Reader),
            ("/idreg.v1.Sessions/ListSessions", Role::Reader),
            ("/idreg.v1.Cluster/GetStatus", Role::Reader),
            ("/idreg.v1.Enrollment/GetDeviceCa", Role::Reader),
            ("/idreg.v1.Enrollment/ListEnrollmentGroups", Role::Reader),
            ("/idreg.v1.Enrollment/CreateEnrollmentGroup", Role::Operator),
            ("/idreg.v1.Enrollment/DeleteEnrollmentGroup", Role::Operator),
            (
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                Role::Reader,
            ),
            ("/idreg.v1.DeviceRegistry/CreateDevice", Role::Operator),
            ("/idreg.v1.DeviceRegistry/ImportDevices", Role::Operator),
            ("/idreg.v1.DeviceRegistry/RevokeDevice", Role::Operator),
            ("/idreg.v1.DeviceRegistry/RotatePsk", Role::Operator),
            ("/idreg.v1.Cluster/AddNode", Role::Admin),
            ("/idreg.v1.Enrollment/ImportDeviceCa", Role::Admin),
            ("/idreg.v1.Cluster/SaveSnapshot", Role::Admin),
            ("/idreg.v1.Cluster/SomethingNew", Role::Admin),
            ("/idreg.v1.Raft/AppendEntries", Role::Admin),
        ];
        for (path, least) in cases {
            for role in [Role::Reader, Role::Operator, Role::Admin] {
                let r = check(Listener::Client, path, Some(&client(role)));
                assert_eq!(r.is_ok(), role >= least, "{path} as {role}");
                if let Err(s) = r {
                    assert_eq!(s.code(), tonic::Code::PermissionDenied);
                    assert!(s.message().contains(least.as_str()), "{}", s.message());
                }
            }
            let s = check(Listener::Client, path, None).unwrap_err();
            assert_eq!(s.code(), tonic::Code::Unauthenticated, "{path}");
        }
    }

    #[test]
    fn health_is_open_everywhere() {
        for l in [Listener::Client, Listener::Peer] {
            assert!(check(l, "/grpc.health.v1.Health/Check", None).is_ok());
        }
    }

    #[test]
    fn the_peer_port_admits_nodes_only() {
        let path = "/idreg.v1.Raft/Vote";
        assert!(check(Listener::Peer, path, Some(&Caller::Node(2))).is_ok());
        for caller in [None, Some(client(Role::Admin))] {
            let s = check(Listener::Peer, path, caller.as_ref()).unwrap_err();
            assert_eq!(s.code(), tonic::Code::PermissionDenied);
        }
        // A node certificate is no role on the client port.
        let s = check(
            Listener::Client,
            "/idreg.v1.DeviceRegistry/GetDevice",
            Some(&Caller::Node(1)),
        )
        .unwrap_err();
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
    }
}
