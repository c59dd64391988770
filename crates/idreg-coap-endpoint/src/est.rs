//! EST over secure CoAP (RFC 9148) on the device front, under
//! `/.well-known/est`: `crts`, the device CA's certificate; `sen` and
//! `sren`, enrollment and re-enrollment with a PKCS#10 request, answered
//! once the registry has recorded the device with its new certificate.

use coap_lite::{ContentFormat, ResponseType};

use crate::pkcs7;
use crate::resources::{Reply, Request, ResourceContext, Routed};

/// How the device wants its certificate back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateFormat {
    /// application/pkcs7-mime; smime-type=certs-only (281), the default.
    Pkcs7,
    /// application/pkix-cert (287): the DER certificate alone.
    Der,
}

/// A `sen` or `sren` request that passed the CoAP checks.
#[derive(Debug, Clone, Copy)]
pub struct EnrollRequest<'a> {
    /// `sren`: re-enrollment with the session's operational credential.
    pub reenroll: bool,
    /// The DER PKCS#10 request.
    pub csr: &'a [u8],
    pub format: CertificateFormat,
}

/// `POST sen`/`sren`: a PKCS#10 request (286) in; the certificate (281 or
/// 287) out, later.
pub fn enroll(reenroll: bool, request: &Request<'_>, ctx: &dyn ResourceContext) -> Routed {
    if request.content_format != Some(ContentFormat::ApplicationPkcs10) {
        return Routed::Now(Reply::error(
            ResponseType::UnsupportedContentFormat,
            "the request must be application/pkcs10 (286)",
        ));
    }
    let format =
        match request.accept {
            None | Some(ContentFormat::ApplicationPkcs7MimeCertsOnly) => CertificateFormat::Pkcs7,
            Some(ContentFormat::ApplicationPkixCert) => CertificateFormat::Der,
            Some(_) => return Routed::Now(Reply::error(
                ResponseType::NotAcceptable,
                "application/pkcs7-mime;smime-type=certs-only (281) or application/pkix-cert (287)",
            )),
        };
    if request.payload.is_empty() {
        return Routed::Now(Reply::error(
            ResponseType::BadRequest,
            "no certification request in the body",
        ));
    }
    let enroll = EnrollRequest {
        reenroll,
        csr: request.payload,
        format,
    };
    match ctx.start_enrollment(&enroll) {
        Ok(()) => Routed::Later,
        Err(reply) => Routed::Now(reply),
    }
}

/// The 2.04 answer to an enrollment: the issued certificate.
pub fn certificate_reply(certificate: &[u8], format: CertificateFormat) -> Reply {
    let (format, payload) = match format {
        CertificateFormat::Pkcs7 => (
            ContentFormat::ApplicationPkcs7MimeCertsOnly,
            pkcs7::certs_only(&[certificate]),
        ),
        CertificateFormat::Der => (ContentFormat::ApplicationPkixCert, certificate.to_vec()),
    };
    Reply {
        code: ResponseType::Changed,
        format: Some(format),
        payload,
    }
}

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
