//! Which socket shard owns a session, for the datagrams the kernel's
//! SO_REUSEPORT hashing hands to another shard: a device whose NAT rebinds
//! (its Connection ID record now hashes elsewhere), or a session restored
//! after a restart (the hash of the new sockets differs). A shard consults
//! it only when its own endpoint has no peer for a datagram.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use idreg_dtls::session::Cid;

#[derive(Default)]
pub struct ShardDirectory {
    by_addr: Mutex<HashMap<SocketAddr, u16>>,
    by_cid: Mutex<HashMap<Cid, u16>>,
}

impl ShardDirectory {
    pub fn insert(&self, shard: u16, addr: SocketAddr, cid: Option<Cid>) {
        self.by_addr
            .lock()
            .expect("directory lock")
            .insert(addr, shard);
        if let Some(cid) = cid {
            self.by_cid
                .lock()
                .expect("directory lock")
                .insert(cid, shard);
        }
    }

    pub fn moved(&self, shard: u16, from: SocketAddr, to: SocketAddr) {
        let mut m = self.by_addr.lock().expect("directory lock");
        if m.get(&from) == Some(&shard) {
            m.remove(&from);
        }
        m.insert(to, shard);
    }

    pub fn remove(&self, shard: u16, addr: SocketAddr, cid: Option<Cid>) {
        let mut m = self.by_addr.lock().expect("directory lock");
        if m.get(&addr) == Some(&shard) {
            m.remove(&addr);
        }
        drop(m);
        if let Some(cid) = cid {
            let mut c = self.by_cid.lock().expect("directory lock");
            if c.get(&cid) == Some(&shard) {
                c.remove(&cid);
            }
        }
    }

    pub fn shard_of_addr(&self, addr: &SocketAddr) -> Option<u16> {
        self.by_addr
            .lock()
            .expect("directory lock")
            .get(addr)
            .copied()
    }

    pub fn shard_of_cid(&self, cid: &Cid) -> Option<u16> {
        self.by_cid
            .lock()
            .expect("directory lock")
            .get(cid)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_removes_only_what_it_owns() {
        let d = ShardDirectory::default();
        let a: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let b: SocketAddr = "192.0.2.1:2".parse().unwrap();
        d.insert(0, a, Some([1; 6]));
        d.insert(1, a, None); // the address now belongs to shard 1
        d.remove(0, a, Some([1; 6]));
        assert_eq!(d.shard_of_addr(&a), Some(1));
        assert_eq!(d.shard_of_cid(&[1; 6]), None);
        d.moved(1, a, b);
        assert_eq!((d.shard_of_addr(&a), d.shard_of_addr(&b)), (None, Some(1)));
    }
}
