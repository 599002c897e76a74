//! Protobuf wire-format reading: varints, fixed-width values and
//! length-delimited bytes, with every bound checked.

/// One field value as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl WireValue<'_> {
    /// The wire type number, for error messages.
    pub(super) fn wire_type(&self) -> u8 {
        match self {
            WireValue::Varint(_) => 0,
            WireValue::Fixed64(_) => 1,
            WireValue::Bytes(_) => 2,
            WireValue::Fixed32(_) => 5,
        }
    }
}

/// What is wrong with the encoding; the caller adds where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum WireError {
    TruncatedVarint,
    VarintTooLong,
    Truncated { wanted: usize, left: usize },
    FieldNumber(u64),
    WireType { field: u32, wire_type: u8 },
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::TruncatedVarint => write!(f, "truncated varint"),
            WireError::VarintTooLong => write!(f, "varint longer than 10 bytes"),
            WireError::Truncated { wanted, left } => write!(
                f,
                "value of {wanted} bytes runs past the end of its message ({left} bytes left)"
            ),
            WireError::FieldNumber(n) => write!(f, "invalid field number {n}"),
            WireError::WireType { field, wire_type } => {
                write!(f, "field {field} has unsupported wire type {wire_type}")
            }
        }
    }
}

/// Reads fields one by one from a message's bytes.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(super) fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(WireError::TruncatedVarint);
            };
            self.pos += 1;
            // The 10th byte may only carry the top bit of a 64-bit value.
            if i == 9 && byte > 1 {
                return Err(WireError::VarintTooLong);
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::VarintTooLong)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        let left = self.buf.len() - self.pos;
        if len > left {
            return Err(WireError::Truncated { wanted: len, left });
        }
        let out = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    pub(super) fn fixed32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn fixed64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    /// Reads the next field's number and value; `None` at the end.
    pub(super) fn field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, WireError> {
        if self.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let number = tag >> 3;
        // Field numbers are 1..=2^29-1; 0 means the bytes are not protobuf.
        if number == 0 || number > (1 << 29) - 1 {
            return Err(WireError::FieldNumber(number));
        }
        let field = number as u32;
        let value = match tag & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => WireValue::Fixed64(self.fixed64()?),
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                WireValue::Bytes(self.take(len)?)
            }
            5 => WireValue::Fixed32(self.fixed32()?),
            // 3/4 are proto2 groups, which Kubernetes never uses; 6/7 do not exist.
            wire_type => {
                return Err(WireError::WireType {
                    field,
                    wire_type: wire_type as u8,
                })
            }
        };
        Ok(Some((field, value)))
    }
}
