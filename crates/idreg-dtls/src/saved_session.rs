//! An established session written out and read back, so a server restart
//! does not make every device handshake again (a battery device may take
//! days to come back). The bytes hold the session keys: the owner must
//! encrypt them before they touch a disk.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::cipher_suite::CipherSuite;
use crate::reader::{DecodeError, Put, Reader};
use crate::record_cipher::DirectionKey;
use crate::replay_window::ReplayWindow;
use crate::session::{AuthCredential, Cid, Session, CID_LEN};

const FORMAT: u8 = 1;

/// Appends `session` (its device as `device` bytes) to `out`. `now` turns
/// the time it was last heard from into an age.
pub fn encode<D>(session: &Session<D>, device: &[u8], now: Instant, out: &mut Vec<u8>) {
    let mut b = Vec::with_capacity(160 + device.len());
    b.put_u8(FORMAT);
    b.put_vec16(device);
    match &session.credential {
        AuthCredential::Psk { identity } => {
            b.put_u8(0);
            b.put_vec16(identity);
        }
        AuthCredential::PublicKey { fingerprint, raw } => {
            b.put_u8(1);
            b.extend_from_slice(fingerprint);
            b.put_u8(u8::from(*raw));
        }
    }
    b.put_u16(session.suite.id());
    for k in [&session.read, &session.write] {
        b.extend_from_slice(&k.key);
        b.extend_from_slice(&k.iv);
    }
    b.extend_from_slice(&session.write_sequence.to_be_bytes());
    let (top, bits) = session.replay.to_parts();
    b.extend_from_slice(&top.to_be_bytes());
    b.extend_from_slice(&bits.to_be_bytes());
    match &session.our_cid {
        Some(cid) => {
            b.put_u8(1);
            b.extend_from_slice(cid);
        }
        None => b.put_u8(0),
    }
    b.put_vec8(session.peer_cid.as_deref().unwrap_or(&[]));
    match session.addr.ip() {
        IpAddr::V4(ip) => {
            b.put_u8(4);
            b.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            b.put_u8(6);
            b.extend_from_slice(&ip.octets());
        }
    }
    b.put_u16(session.addr.port());
    let age = now
        .saturating_duration_since(session.last_heard)
        .as_millis() as u64;
    b.extend_from_slice(&age.to_be_bytes());
    b.extend_from_slice(&session.epoch0_sequence.to_be_bytes());
    b.put_u16(session.finished_message_seq);
    b.extend_from_slice(&session.bytes_in.to_be_bytes());
    b.extend_from_slice(&session.bytes_out.to_be_bytes());
    out.put_vec16(&b);
}

fn u64_of(r: &mut Reader<'_>) -> Result<u64, DecodeError> {
    Ok(u64::from_be_bytes(r.array()?))
}

/// Reads one session written by [`encode`]; `device` turns its device bytes
/// back into the owner's type. Its age is counted back from `now`.
pub fn decode<'a, D>(
    r: &mut Reader<'a>,
    now: Instant,
    device: impl FnOnce(&'a [u8]) -> Option<D>,
) -> Result<Session<D>, DecodeError> {
    let mut r = Reader::new(r.vec16()?);
    if r.u8()? != FORMAT {
        return Err(DecodeError::Malformed("saved session format"));
    }
    let device = device(r.vec16()?).ok_or(DecodeError::Malformed("device"))?;
    let credential = match r.u8()? {
        0 => AuthCredential::Psk {
            identity: r.vec16()?.into(),
        },
        1 => AuthCredential::PublicKey {
            fingerprint: r.array()?,
            raw: r.u8()? == 1,
        },
        _ => return Err(DecodeError::Malformed("credential")),
    };
    let suite = CipherSuite::from_id(r.u16()?).ok_or(DecodeError::Malformed("suite"))?;
    let read = DirectionKey {
        key: r.array()?,
        iv: r.array()?,
    };
    let write = DirectionKey {
        key: r.array()?,
        iv: r.array()?,
    };
    let write_sequence = u64_of(&mut r)?;
    let replay = ReplayWindow::from_parts(u64_of(&mut r)?, u64_of(&mut r)?);
    let our_cid: Option<Cid> = match r.u8()? {
        0 => None,
        _ => Some(r.array::<CID_LEN>()?),
    };
    let peer_cid = Some(r.vec8()?).filter(|c| !c.is_empty()).map(Box::from);
    let ip: IpAddr = match r.u8()? {
        4 => IpAddr::from(r.array::<4>()?),
        6 => IpAddr::from(r.array::<16>()?),
        _ => return Err(DecodeError::Malformed("address family")),
    };
    let addr = SocketAddr::new(ip, r.u16()?);
    let age = Duration::from_millis(u64_of(&mut r)?);
    let epoch0_sequence = u64_of(&mut r)?;
    let finished_message_seq = r.u16()?;
    let bytes_in = u64_of(&mut r)?;
    let bytes_out = u64_of(&mut r)?;
    r.finish()?;
    Ok(Session {
        device,
        credential,
        suite,
        read,
        write,
        write_sequence,
        replay,
        our_cid,
        peer_cid,
        addr,
        last_heard: now.checked_sub(age).unwrap_or(now),
        finished_to_resend: None,
        epoch0_sequence,
        finished_message_seq,
        bytes_in,
        bytes_out,
    })
}
