//! Mapping of idreg errors to gRPC status codes with messages a user can act on.

use idreg_core::{Rejection, ValidationError};
use idreg_raft::WriteError;
use tonic::{Code, Status};

pub fn invalid(e: ValidationError) -> Status {
    Status::invalid_argument(e.to_string())
}

pub fn rejection(r: Rejection) -> Status {
    let code = match &r {
        Rejection::DeviceExists(_)
        | Rejection::PskIdentityTaken { .. }
        | Rejection::KeyTaken { .. }
        | Rejection::DeviceCaExists
        | Rejection::RlKeyExists
        | Rejection::GroupExists(_)
        | Rejection::SignerExists(_)
        | Rejection::ReleaseExists(_) => Code::AlreadyExists,
        Rejection::DeviceNotFound(_)
        | Rejection::CredentialNotFound { .. }
        | Rejection::GroupNotFound(_)
        | Rejection::SignerNotFound(_)
        | Rejection::ReleaseNotFound(_)
        | Rejection::RolloutNotFound(_) => Code::NotFound,
        Rejection::GatewayIsSelf(_) | Rejection::Malformed(_) | Rejection::FirmwareRefused(_) => {
            Code::InvalidArgument
        }
        Rejection::UploadConflict(_) => Code::Aborted,
        Rejection::ReleaseInRollout(_) => Code::FailedPrecondition,
        Rejection::GatewayHasSpokes { .. }
        | Rejection::Revoked(_)
        | Rejection::RevokedCredential { .. }
        | Rejection::TooManyCredentials(..)
        | Rejection::GatewayNotFound(_)
        | Rejection::GroupClosed(_)
        | Rejection::NotEnrollable(_) => Code::FailedPrecondition,
    };
    Status::new(code, r.to_string())
}

pub fn write(e: WriteError) -> Status {
    match e {
        WriteError::NotLeader { .. }
        | WriteError::NoLeader
        | WriteError::OutcomeUnknown(_)
        | WriteError::ShuttingDown => Status::unavailable(e.to_string()),
        WriteError::Refused(_) => Status::failed_precondition(e.to_string()),
        WriteError::MemberElsewhere { .. } => Status::already_exists(e.to_string()),
        WriteError::NotAMember(_) => Status::not_found(e.to_string()),
        WriteError::Raft(_) => Status::internal(e.to_string()),
    }
}

pub fn storage(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("storage: {e}"))
}
