//! How many handshakes may be in flight, in all, per source address and per
//! source network. Handshakes hold state only after the cookie round trip, so
//! these bound what clients that can receive at their address can make the
//! server hold.

use std::collections::HashMap;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Network {
    V4([u8; 3]),
    V6([u8; 7]),
}

fn network(ip: IpAddr) -> Network {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            Network::V4([o[0], o[1], o[2]])
        }
        IpAddr::V6(a) => {
            let o = a.octets();
            let mut n = [0u8; 7];
            n.copy_from_slice(&o[..7]);
            Network::V6(n)
        }
    }
}

/// Why a handshake was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverBudget {
    Total,
    Address,
    Network,
}

pub struct HandshakeBudget {
    total: usize,
    by_address: HashMap<IpAddr, u32>,
    by_network: HashMap<Network, u32>,
    max_total: usize,
    max_address: u32,
    max_network: u32,
}

impl HandshakeBudget {
    pub fn new(max_total: usize, max_address: usize, max_network: usize) -> Self {
        Self {
            total: 0,
            by_address: HashMap::new(),
            by_network: HashMap::new(),
            max_total,
            max_address: max_address as u32,
            max_network: max_network as u32,
        }
    }

    pub fn in_flight(&self) -> usize {
        self.total
    }

    /// Takes one place for `ip`, or says which bound is reached.
    pub fn take(&mut self, ip: IpAddr) -> Result<(), OverBudget> {
        if self.total >= self.max_total {
            return Err(OverBudget::Total);
        }
        if self.by_address.get(&ip).copied().unwrap_or(0) >= self.max_address {
            return Err(OverBudget::Address);
        }
        let net = network(ip);
        if self.by_network.get(&net).copied().unwrap_or(0) >= self.max_network {
            return Err(OverBudget::Network);
        }
        self.total += 1;
        *self.by_address.entry(ip).or_default() += 1;
        *self.by_network.entry(net).or_default() += 1;
        Ok(())
    }

    /// Gives back the place `ip` took.
    pub fn give_back(&mut self, ip: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.by_address.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.by_address.remove(&ip);
            }
        }
        let net = network(ip);
        if let Some(n) = self.by_network.get_mut(&net) {
            *n -= 1;
            if *n == 0 {
                self.by_network.remove(&net);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_host_and_one_network_cannot_take_everything() {
        let mut b = HandshakeBudget::new(10, 2, 3);
        let host: IpAddr = "198.51.100.7".parse().unwrap();
        assert!(b.take(host).is_ok());
        assert!(b.take(host).is_ok());
        assert_eq!(b.take(host), Err(OverBudget::Address));
        assert!(b.take("198.51.100.8".parse().unwrap()).is_ok());
        assert_eq!(
            b.take("198.51.100.9".parse().unwrap()),
            Err(OverBudget::Network)
        );
        assert!(b.take("203.0.113.1".parse().unwrap()).is_ok());
        b.give_back(host);
        assert!(b.take("198.51.100.9".parse().unwrap()).is_ok());
        assert_eq!(b.in_flight(), 4);
        b.give_back(host);
        assert!(
            !b.by_address.contains_key(&host),
            "empty entries are forgotten"
        );
    }
}
