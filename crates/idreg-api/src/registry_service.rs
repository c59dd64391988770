//! `idreg.v1.DeviceRegistry`.

use idreg_core::credential::{check_psk_identity, check_psk_secret};
use idreg_core::labels::parse_selector;
use idreg_core::DeviceFilter;
use idreg_core::{
    ClonePolicy, Command, CredentialRef, Fingerprint, Kek, NewDevice, Rejection, StatusChange,
    TenantId,
};
use idreg_core::{DeviceDirectory, DeviceStatus, Principal, RegistryView, ValidationError};
use idreg_proto::v1 as pb;
use idreg_raft::RegistryNode;
use pb::device_registry_server::DeviceRegistry;
use tonic::{Request, Response, Status};

use crate::api_limits::{too_many, ApiLimits, Slots};
use crate::caller_auth::author;
use crate::convert;
use crate::page_token;
use crate::registry_backend::RegistryBackend;
use crate::status::{invalid, rejection, storage, write};

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A request's page size: 0 means the default; above the maximum is an error.
pub fn page_size(requested: u32) -> Result<usize, Status> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE as usize),
        n if n > MAX_PAGE_SIZE => Err(Status::invalid_argument(format!(
            "page_size: at most {MAX_PAGE_SIZE}"
        ))),
        n => Ok(n as usize),
    }
}

/// The device registry's gRPC service over a registry backend: the
/// replicated [`RegistryNode`] in the server, an in-memory one in unit tests.
#[derive(Clone)]
pub struct RegistryService<B = RegistryNode> {
    node: B,
    kek: Kek,
    /// Live WatchDevices streams.
    watchers: Slots,
    max_label_selectors: usize,
    max_message_bytes: usize,
}

impl<B: RegistryBackend> RegistryService<B> {
    pub fn new(node: B, kek: Kek, limits: &ApiLimits) -> Self {
        Self {
            node,
            kek,
            watchers: Slots::new(
                limits.max_watchers,
                "--max-watchers",
                "WatchDevices streams",
            ),
            max_label_selectors: limits.max_label_selectors,
            max_message_bytes: limits.max_message_bytes,
        }
    }

    pub fn into_server(self) -> pb::device_registry_server::DeviceRegistryServer<Self> {
        let max = self.max_message_bytes;
        pb::device_registry_server::DeviceRegistryServer::new(self).max_decoding_message_size(max)
    }

    /// Proposes `command` and turns the verdict into a device or a status.
    async fn execute(&self, command: Command, by: Principal) -> Result<Option<pb::Device>, Status> {
        let verdict = self.node.propose(command, by).await.map_err(write)?;
        let device = verdict.map_err(rejection)?;
        Ok(device.as_ref().map(convert::device_to_proto))
    }

    /// A CreateDeviceRequest checked and turned into a command's payload,
    /// PSK secrets sealed.
    fn new_device(&self, req: &pb::CreateDeviceRequest) -> Result<NewDevice, ValidationError> {
        let id = convert::device_id("id", &req.id)?;
        let tenant = if req.tenant.is_empty() {
            TenantId::default_tenant()
        } else {
            TenantId::parse("tenant", &req.tenant)?
        };
        Ok(NewDevice {
            labels: convert::labels("labels", &req.labels)?,
            gateway: convert::optional_id("gateway", &req.gateway)?,
            credentials: convert::credentials("credentials", &id, &req.credentials, &self.kek)?,
            tenant,
            id,
        })
    }

    /// For a LINEARIZABLE read: waits until this node has applied every
    /// write acknowledged before now.
    async fn read_barrier(&self, consistency: i32) -> Result<(), Status> {
        match pb::ReadConsistency::try_from(consistency) {
            Ok(pb::ReadConsistency::Linearizable) => self.node.linearize().await.map_err(write),
            Ok(_) => Ok(()),
            Err(_) => Err(Status::invalid_argument(format!(
                "consistency: unknown value {consistency}"
            ))),
        }
    }

    async fn execute_expecting_device(
        &self,
        command: Command,
        by: Principal,
    ) -> Result<Response<pb::Device>, Status> {
        match self.execute(command, by).await? {
            Some(d) => Ok(Response::new(d)),
            None => Err(Status::internal(
                "the command deleted the device it should have returned",
            )),
        }
    }
}

fn filter_of(req: &pb::ListDevicesRequest) -> Result<(DeviceFilter, [u8; 8]), ValidationError> {
    let status = convert::status("status", req.status)?;
    let mut labels = req
        .labels
        .iter()
        .enumerate()
        .map(|(i, s)| parse_selector(&format!("labels[{i}]"), s))
        .collect::<Result<Vec<_>, _>>()?;
    labels.sort();
    labels.dedup();
    let tenant = convert::optional_id("tenant", &req.tenant)?.map(|t| t.to_string());
    let gateway = convert::optional_id("gateway", &req.gateway)?.map(|g| g.to_string());
    let status_text = status.map(DeviceStatus::as_str).unwrap_or("");
    let label_text: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut digest_fields = vec![
        status_text,
        tenant.as_deref().unwrap_or(""),
        gateway.as_deref().unwrap_or(""),
    ];
    digest_fields.extend(label_text.iter().map(String::as_str));
    let digest = page_token::filter_digest(&digest_fields);
    Ok((
        DeviceFilter {
            status,
            labels,
            tenant,
            gateway,
        },
        digest,
    ))
}

#[tonic::async_trait]
impl<B: RegistryBackend> DeviceRegistry for RegistryService<B> {
    async fn create_device(
        &self,
        request: Request<pb::CreateDeviceRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        let by = author(&request);
        let new = self.new_device(&request.into_inner()).map_err(invalid)?;
        self.execute_expecting_device(Command::Create(new), by)
            .await
    }

    async fn get_device(
        &self,
        request: Request<pb::GetDeviceRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        let id = convert::device_id("id", &request.get_ref().id).map_err(invalid)?;
        self.read_barrier(request.get_ref().consistency).await?;
        match self.node.directory().device(&id).map_err(storage)? {
            Some(d) => Ok(Response::new(convert::device_to_proto(&d))),
            None => Err(rejection(Rejection::DeviceNotFound(id.to_string()))),
        }
    }

    async fn get_device_history(
        &self,
        request: Request<pb::GetDeviceHistoryRequest>,
    ) -> Result<Response<pb::DeviceHistory>, Status> {
        let id = convert::device_id("id", &request.get_ref().id).map_err(invalid)?;
        self.read_barrier(request.get_ref().consistency).await?;
        let records = self.node.directory().audit(&id).map_err(storage)?;
        Ok(Response::new(pb::DeviceHistory {
            entries: records
                .iter()
                .map(|r| pb::DeviceHistoryEntry {
                    at: Some(convert::timestamp(r.at_ms)),
                    revision: r.revision,
                    action: r.action.as_str().into(),
                    principal: r.by.principal.name.clone(),
                    role: r.by.principal.role.as_str().into(),
                    node: r.by.node,
                })
                .collect(),
        }))
    }

    async fn list_devices(
        &self,
        request: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        let req = request.into_inner();
        if req.labels.len() > self.max_label_selectors {
            return Err(too_many(
                "labels",
                req.labels.len(),
                self.max_label_selectors,
                "--max-label-selectors",
            ));
        }
        let (filter, digest) = filter_of(&req).map_err(invalid)?;
        let page_size = page_size(req.page_size)?;
        let after = if req.page_token.is_empty() {
            None
        } else {
            Some(page_token::decode(digest, &req.page_token).map_err(Status::invalid_argument)?)
        };
        self.read_barrier(req.consistency).await?;
        let reader = self.node.directory();
        let (revision, page) = tokio::task::spawn_blocking(move || {
            // The revision first: the page reflects at least that much.
            let revision = reader.applied_index()?;
            Ok::<_, B::ReadError>((revision, reader.list(&filter, after.as_deref(), page_size)?))
        })
        .await
        .map_err(storage)?
        .map_err(storage)?;
        let next_page_token = match (page.more, page.devices.last()) {
            (true, Some(last)) => page_token::encode(digest, last.id.as_str()),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListDevicesResponse {
            devices: page.devices.iter().map(convert::device_to_proto).collect(),
            next_page_token,
            revision,
        }))
    }

    async fn update_device(
        &self,
        request: Request<pb::UpdateDeviceRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        let by = author(&request);
        let req = request.into_inner();
        let id = convert::device_id("id", &req.id).map_err(invalid)?;
        let labels = if req.replace_labels {
            Some(convert::labels("labels", &req.labels).map_err(invalid)?)
        } else if !req.labels.is_empty() {
            return Err(Status::invalid_argument(
                "labels: set replace_labels to replace the device's labels",
            ));
        } else {
            None
        };
        let status = match convert::status("status", req.status).map_err(invalid)? {
            None => None,
            Some(DeviceStatus::Active) => Some(StatusChange::Active),
            Some(DeviceStatus::Disabled) => Some(StatusChange::Disabled),
            Some(DeviceStatus::Revoked) => {
                return Err(Status::invalid_argument(
                    "status: use RevokeDevice to revoke a device",
                ));
            }
        };
        let gateway = if req.set_gateway {
            Some(convert::optional_id("gateway", &req.gateway).map_err(invalid)?)
        } else {
            None
        };
        let add_credentials =
            convert::credentials("add_credentials", &id, &req.add_credentials, &self.kek)
                .map_err(invalid)?;
        let mut remove_credentials = Vec::new();
        for (i, identity) in req.remove_psk_identities.iter().enumerate() {
            idreg_core::credential::check_psk_identity(
                &format!("remove_psk_identities[{i}]"),
                identity,
            )
            .map_err(invalid)?;
            remove_credentials.push(CredentialRef::PskIdentity(identity.clone()));
        }
        for (i, fp) in req.remove_fingerprints.iter().enumerate() {
            let fp = Fingerprint::parse_hex(&format!("remove_fingerprints[{i}]"), fp)
                .map_err(invalid)?;
            remove_credentials.push(CredentialRef::Fingerprint(fp));
        }
        let command = Command::Update {
            id,
            labels,
            status,
            gateway,
            add_credentials,
            remove_credentials,
        };
        self.execute_expecting_device(command, by).await
    }

    async fn revoke_device(
        &self,
        request: Request<pb::RevokeDeviceRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        let by = author(&request);
        let req = request.into_inner();
        let id = convert::device_id("id", &req.id).map_err(invalid)?;
        if req.reason.len() > idreg_core::limits::MAX_REASON_LEN {
            return Err(Status::invalid_argument(format!(
                "reason: longer than {} bytes",
                idreg_core::limits::MAX_REASON_LEN
            )));
        }
        self.execute_expecting_device(
            Command::Revoke {
                id,
                reason: req.reason,
            },
            by,
        )
        .await
    }

    async fn rotate_psk(
        &self,
        request: Request<pb::RotatePskRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        let by = author(&request);
        let req = request.into_inner();
        let id = convert::device_id("id", &req.id).map_err(invalid)?;
        let psk = req
            .psk
            .ok_or_else(|| Status::invalid_argument("psk: required"))?;
        check_psk_identity("psk.identity", &psk.identity).map_err(invalid)?;
        check_psk_secret("psk.secret", &psk.secret).map_err(invalid)?;
        let replaces = match req.replaces.is_empty() {
            true => None,
            false => {
                check_psk_identity("replaces", &req.replaces).map_err(invalid)?;
                Some(req.replaces)
            }
        };
        let grace_ms = match req.grace_seconds {
            0 => 24 * 3_600_000,
            s => s.saturating_mul(1000),
        };
        let command = Command::RotatePsk {
            secret: self.kek.seal(&psk.secret, id.as_str().as_bytes()),
            id,
            identity: psk.identity,
            replaces,
            grace_ms,
        };
        self.execute_expecting_device(command, by).await
    }

    async fn set_tenant_policy(
        &self,
        request: Request<pb::TenantPolicy>,
    ) -> Result<Response<pb::TenantPolicy>, Status> {
        let by = author(&request);
        let req = request.into_inner();
        let tenant = TenantId::parse("tenant", &req.tenant).map_err(invalid)?;
        let policy = match req.on_clone.as_str() {
            "" => None,
            text => Some(ClonePolicy::parse(text).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "on_clone: {text:?} is not {}",
                    ClonePolicy::NAMES
                ))
            })?),
        };
        self.execute(Command::SetTenantClonePolicy { tenant, policy }, by)
            .await?;
        Ok(Response::new(req))
    }

    async fn get_tenant_policy(
        &self,
        request: Request<pb::GetTenantPolicyRequest>,
    ) -> Result<Response<pb::TenantPolicy>, Status> {
        let tenant = TenantId::parse("tenant", &request.get_ref().tenant).map_err(invalid)?;
        self.read_barrier(request.get_ref().consistency).await?;
        let policy = self
            .node
            .directory()
            .clone_policy(&tenant)
            .map_err(storage)?;
        Ok(Response::new(pb::TenantPolicy {
            tenant: tenant.to_string(),
            on_clone: policy.map(|p| p.as_str().to_owned()).unwrap_or_default(),
        }))
    }

    async fn delete_device(
        &self,
        request: Request<pb::DeleteDeviceRequest>,
    ) -> Result<Response<pb::DeleteDeviceResponse>, Status> {
        let id = convert::device_id("id", &request.get_ref().id).map_err(invalid)?;
        self.execute(Command::Delete { id }, author(&request))
            .await?;
        Ok(Response::new(pb::DeleteDeviceResponse {}))
    }

    async fn import_devices(
        &self,
        request: Request<tonic::Streaming<pb::ImportDevicesRequest>>,
    ) -> Result<Response<pb::ImportDevicesResponse>, Status> {
        let by = author(&request);
        let mut stream = request.into_inner();
        let mut importer = crate::importer::Importer::new(self.node.clone(), by);
        while let Some(chunk) = stream.message().await? {
            if chunk.devices.len() > crate::importer::MAX_CHUNK {
                return Err(Status::invalid_argument(format!(
                    "devices: at most {} per message; nothing after device {} was imported",
                    crate::importer::MAX_CHUNK,
                    importer.seen()
                )));
            }
            for req in &chunk.devices {
                let new = self
                    .new_device(req)
                    .map_err(|e| (req.id.clone(), invalid(e)));
                importer.submit(new).await;
            }
        }
        Ok(Response::new(importer.finish().await))
    }

    type WatchDevicesStream =
        tokio_stream::wrappers::ReceiverStream<Result<pb::WatchDevicesResponse, Status>>;

    async fn watch_devices(
        &self,
        request: Request<pb::WatchDevicesRequest>,
    ) -> Result<Response<Self::WatchDevicesStream>, Status> {
        let slot = self.watchers.take()?;
        let rx = self.node.watch(request.get_ref().from_revision, slot)?;
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }
}

#[cfg(test)]
mod tests {
    //! The service over an in-memory registry: requests in, verdicts and
    //! pages out, with no RocksDB and no raft.

    use super::*;
    use crate::mem_backend::{as_admin, MemBackend};
    use idreg_core::Role;
    use pb::credential_input::Kind;
    use tonic::Code;

    fn service() -> (RegistryService<MemBackend>, MemBackend) {
        let backend = MemBackend::default();
        let kek = Kek::from_bytes(&[7; 32]);
        let svc = RegistryService::new(backend.clone(), kek, &crate::ApiLimits::default());
        (svc, backend)
    }

    fn psk(identity: &str) -> pb::CredentialInput {
        pb::CredentialInput {
            kind: Some(Kind::Psk(pb::PskInput {
                identity: identity.as_bytes().to_vec(),
                secret: vec![9; 16],
            })),
        }
    }

    fn create(id: &str, tenant: &str, labels: &[(&str, &str)]) -> pb::CreateDeviceRequest {
        pb::CreateDeviceRequest {
            id: id.into(),
            tenant: tenant.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            gateway: String::new(),
            credentials: vec![psk(&format!("psk-{id}"))],
        }
    }

    fn get(id: &str) -> Request<pb::GetDeviceRequest> {
        Request::new(pb::GetDeviceRequest {
            id: id.into(),
            consistency: 0,
        })
    }

    #[tokio::test]
    async fn create_then_get_and_history_name_the_caller() {
        let (svc, _) = service();
        let made = svc
            .create_device(as_admin(create("s-1", "", &[("site", "north")])))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(made.id, "s-1");
        assert_eq!(made.status, pb::DeviceStatus::Active as i32);
        let got = svc.get_device(get("s-1")).await.unwrap().into_inner();
        assert_eq!(got, made);
        let history = svc
            .get_device_history(Request::new(pb::GetDeviceHistoryRequest {
                id: "s-1".into(),
                consistency: 0,
            }))
            .await
            .unwrap()
            .into_inner();
        let actions: Vec<_> = history.entries.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["create"]);
        assert_eq!(history.entries[0].principal, "ops");
        assert_eq!(history.entries[0].role, "admin");
    }

    #[tokio::test]
    async fn bad_input_is_refused_and_changes_nothing() {
        let (svc, backend) = service();
        let err = svc
            .create_device(as_admin(create("not a valid id!", "", &[])))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().starts_with("id:"), "{}", err.message());
        let mut short = create("s-2", "", &[]);
        short.credentials = vec![pb::CredentialInput {
            kind: Some(Kind::Psk(pb::PskInput {
                identity: b"psk-s-2".to_vec(),
                secret: vec![1; 4],
            })),
        }];
        let err = svc.create_device(as_admin(short)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert_eq!(backend.registry().devices().count(), 0);
        assert_eq!(
            svc.get_device(get("s-2")).await.unwrap_err().code(),
            Code::NotFound
        );
    }

    #[tokio::test]
    async fn verdicts_map_to_codes_a_caller_can_act_on() {
        let (svc, _) = service();
        svc.create_device(as_admin(create("s-1", "", &[])))
            .await
            .unwrap();
        let dup = svc
            .create_device(as_admin(create("s-1", "", &[])))
            .await
            .unwrap_err();
        assert_eq!(dup.code(), Code::AlreadyExists, "{dup:?}");
        // Another device may not take s-1's PSK identity.
        let mut taken = create("s-2", "", &[]);
        taken.credentials = vec![psk("psk-s-1")];
        let err = svc.create_device(as_admin(taken)).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
        // Revocation is final, and so is the identity it retires.
        let revoked = svc
            .revoke_device(as_admin(pb::RevokeDeviceRequest {
                id: "s-1".into(),
                reason: "stolen".into(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(revoked.status, pb::DeviceStatus::Revoked as i32);
        let mut reuse = create("s-3", "", &[]);
        reuse.credentials = vec![psk("psk-s-1")];
        let err = svc.create_device(as_admin(reuse)).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        let err = svc
            .update_device(as_admin(pb::UpdateDeviceRequest {
                id: "s-1".into(),
                status: pb::DeviceStatus::Revoked as i32,
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        let err = svc
            .update_device(as_admin(pb::UpdateDeviceRequest {
                id: "s-9".into(),
                status: pb::DeviceStatus::Disabled as i32,
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
    }

    async fn list_all(
        svc: &RegistryService<MemBackend>,
        mut req: pb::ListDevicesRequest,
    ) -> Result<Vec<String>, Status> {
        let mut ids = Vec::new();
        for _ in 0..100 {
            let page = svc
                .list_devices(Request::new(req.clone()))
                .await?
                .into_inner();
            assert!(page.devices.len() <= req.page_size as usize);
            ids.extend(page.devices.into_iter().map(|d| d.id));
            if page.next_page_token.is_empty() {
                return Ok(ids);
            }
            req.page_token = page.next_page_token;
        }
        panic!("listing did not end in 100 pages");
    }

    #[tokio::test]
    async fn listing_pages_through_filters_in_id_order() {
        let (svc, _) = service();
        for (id, tenant, site) in [
            ("d-5", "acme", "north"),
            ("d-1", "acme", "south"),
            ("d-3", "zeta", "north"),
            ("d-2", "acme", "north"),
            ("d-4", "zeta", "south"),
        ] {
            svc.create_device(as_admin(create(id, tenant, &[("site", site)])))
                .await
                .unwrap();
        }
        let every = pb::ListDevicesRequest {
            page_size: 2,
            ..Default::default()
        };
        assert_eq!(
            list_all(&svc, every.clone()).await.unwrap(),
            ["d-1", "d-2", "d-3", "d-4", "d-5"]
        );
        let north = pb::ListDevicesRequest {
            labels: vec!["site=north".into()],
            ..every.clone()
        };
        assert_eq!(
            list_all(&svc, north.clone()).await.unwrap(),
            ["d-2", "d-3", "d-5"]
        );
        let acme_north = pb::ListDevicesRequest {
            tenant: "acme".into(),
            ..north.clone()
        };
        assert_eq!(list_all(&svc, acme_north).await.unwrap(), ["d-2", "d-5"]);
        // A token belongs to its filter: reusing it under another is refused.
        let first = svc
            .list_devices(Request::new(north))
            .await
            .unwrap()
            .into_inner();
        let err = svc
            .list_devices(Request::new(pb::ListDevicesRequest {
                page_token: first.next_page_token,
                ..every
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert_eq!(
            first.revision, 5,
            "the listing's revision is the applied one"
        );
    }

    #[tokio::test]
    async fn listing_bounds_are_errors_not_truncations() {
        let (svc, _) = service();
        let err = svc
            .list_devices(Request::new(pb::ListDevicesRequest {
                page_size: MAX_PAGE_SIZE + 1,
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        let err = svc
            .list_devices(Request::new(pb::ListDevicesRequest {
                labels: (0..17).map(|i| format!("k{i}=v")).collect(),
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
        assert!(
            err.message().contains("--max-label-selectors"),
            "{}",
            err.message()
        );
    }

    #[tokio::test]
    async fn a_tenant_policy_reads_back_as_set() {
        let (svc, _) = service();
        let set = pb::TenantPolicy {
            tenant: "acme".into(),
            on_clone: "end-both".into(),
        };
        svc.set_tenant_policy(as_admin(set.clone())).await.unwrap();
        let got = svc
            .get_tenant_policy(Request::new(pb::GetTenantPolicyRequest {
                tenant: "acme".into(),
                consistency: 0,
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got, set);
        let err = svc
            .set_tenant_policy(as_admin(pb::TenantPolicy {
                tenant: "acme".into(),
                on_clone: "explode".into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    }

    #[tokio::test]
    async fn an_import_reports_each_failure_at_its_line_and_the_first_of_two_wins() {
        let (svc, backend) = service();
        let by = Principal {
            name: "ops".into(),
            role: Role::Admin,
        };
        let mut importer = crate::importer::Importer::new(backend.clone(), by);
        let mut second = create("i-2", "", &[]);
        second.credentials = vec![psk("psk-i-1")];
        for req in [
            create("i-1", "", &[]),
            second,
            create("bad id", "", &[]),
            create("i-3", "", &[]),
        ] {
            let new = svc
                .new_device(&req)
                .map_err(|e| (req.id.clone(), invalid(e)));
            importer.submit(new).await;
        }
        let report = importer.finish().await;
        assert_eq!((report.created, report.failed), (2, 2));
        let at: Vec<(u64, &str)> = report
            .errors
            .iter()
            .map(|e| (e.index, e.id.as_str()))
            .collect();
        assert_eq!(at, [(1, "i-2"), (2, "bad id")]);
        assert_eq!(report.errors[0].code, Code::AlreadyExists as i32);
        let ids: Vec<String> = backend
            .registry()
            .devices()
            .map(|d| d.id.to_string())
            .collect();
        assert_eq!(ids, ["i-1", "i-3"]);
    }
}
