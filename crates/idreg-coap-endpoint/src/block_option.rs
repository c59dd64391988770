//! The Block1/Block2 option value of RFC 7959 §2.2: a block number, a "more"
//! flag and a size exponent, packed in an unsigned integer of 0–3 bytes.

/// Block sizes are 2^(szx+4): 16 to 1024 bytes. szx 7 is BERT (RFC 8323),
/// for CoAP over TCP only, so it is refused here.
pub const MAX_SZX: u8 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockOption {
    pub num: u32,
    pub more: bool,
    pub szx: u8,
}

impl BlockOption {
    /// The size a size exponent stands for.
    pub fn size_of(szx: u8) -> usize {
        16usize << szx
    }

    pub fn size(&self) -> usize {
        Self::size_of(self.szx)
    }

    /// Offset of this block's first byte in the whole body.
    pub fn offset(&self) -> usize {
        self.num as usize * self.size()
    }

    /// Decodes an option value; `None` if it is longer than 3 bytes or uses
    /// the reserved size exponent.
    pub fn decode(value: &[u8]) -> Option<Self> {
        if value.len() > 3 {
            return None;
        }
        let v = decode_uint(value)?;
        let szx = (v & 0x07) as u8;
        if szx > MAX_SZX {
            return None;
        }
        Some(Self {
            num: v >> 4,
            more: v & 0x08 != 0,
            szx,
        })
    }

    /// The shortest encoding (zero is the empty value).
    pub fn encode(&self) -> Vec<u8> {
        encode_uint((self.num << 4) | (u32::from(self.more) << 3) | u32::from(self.szx))
    }
}

/// An unsigned option value (RFC 7252 §3.2: 0–4 bytes, big-endian); `None`
/// when longer.
pub fn decode_uint(bytes: &[u8]) -> Option<u32> {
    if bytes.len() > 4 {
        return None;
    }
    Some(bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

/// An unsigned option value (Size1, Size2, Block) in its shortest form.
pub fn encode_uint(v: u32) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    bytes[skip..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_in_their_shortest_form() {
        for (num, more, szx, len) in [
            (0, false, 0, 0),
            (0, true, 6, 1),
            (15, false, 2, 1),
            (16, true, 6, 2),
            (4095, false, 6, 2),
            (4096, false, 0, 3),
            ((1 << 20) - 1, true, 5, 3),
        ] {
            let b = BlockOption { num, more, szx };
            let v = b.encode();
            assert_eq!(v.len(), len, "{b:?}");
            assert_eq!(BlockOption::decode(&v), Some(b));
        }
    }

    #[test]
    fn bert_and_overlong_values_are_refused() {
        assert_eq!(BlockOption::decode(&[0x07]), None);
        assert_eq!(BlockOption::decode(&[0, 0, 0, 0x06]), None);
        assert_eq!(BlockOption::size_of(0), 16);
        assert_eq!(BlockOption::size_of(6), 1024);
    }
}
