//! EST over secure CoAP (RFC 9148) on the device front, under
//! `/.well-known/est`: `crts`, the device CA's certificate.

use coap_lite::{ContentFormat, ResponseType};

use crate::pkcs7;
use crate::resources::{Reply, ResourceContext};

/// `GET crts`: the device CA, as PKCS#7 certs-only (281, the default) or a
/// bare DER certificate (287) on request (RFC 9148 §5).
pub fn crts(accept: Option<ContentFormat>, ctx: &dyn ResourceContext) -> Reply {
    let Some(ca) = ctx.device_ca_certificate() else {
        return Reply::error(
            ResponseType::ServiceUnavailable,
            "the cluster has no device CA yet",
        );
    };
    match accept {
        None | Some(ContentFormat::ApplicationPkcs7MimeCertsOnly) => Reply::content(
            ContentFormat::ApplicationPkcs7MimeCertsOnly,
            pkcs7::certs_only(&[&ca]),
        ),
        Some(ContentFormat::ApplicationPkixCert) => {
            Reply::content(ContentFormat::ApplicationPkixCert, ca)
        }
        Some(_) => Reply::error(
            ResponseType::NotAcceptable,
            "application/pkcs7-mime;smime-type=certs-only (281) or application/pkix-cert (287)",
        ),
    }
}
