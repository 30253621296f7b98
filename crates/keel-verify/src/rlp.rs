//! A strict, allocation-free RLP reader: just what trie nodes and accounts need.
//!
//! Non-canonical encodings (a single byte below 0x80 wrapped in a string header, long-form
//! lengths under 56, lengths with leading zeros) are rejected: honest nodes never produce them,
//! and accepting them would let two byte strings decode to the same node.

/// One decoded RLP item, borrowing from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item<'a> {
    /// A byte string (its payload).
    Bytes(&'a [u8]),
    /// A list: its payload (the concatenated encodings of its items) and its whole encoding.
    List {
        payload: &'a [u8],
        encoded: &'a [u8],
    },
}

/// Decodes the first item of `buf`; returns it and the rest of `buf`.
pub(crate) fn decode(buf: &[u8]) -> Result<(Item<'_>, &[u8]), String> {
    let Some(&first) = buf.first() else {
        return Err("empty input where an RLP item was expected".into());
    };
    let (is_list, header, len) = match first {
        0x00..=0x7f => return Ok((Item::Bytes(&buf[..1]), &buf[1..])),
        0x80..=0xb7 => (false, 1, usize::from(first - 0x80)),
        0xb8..=0xbf => {
            let n = usize::from(first - 0xb7);
            (false, 1 + n, long_len(buf, n)?)
        }
        0xc0..=0xf7 => (true, 1, usize::from(first - 0xc0)),
        0xf8..=0xff => {
            let n = usize::from(first - 0xf7);
            (true, 1 + n, long_len(buf, n)?)
        }
    };
    let end = header
        .checked_add(len)
        .ok_or_else(|| "RLP length overflows".to_owned())?;
    if buf.len() < end {
        return Err(format!(
            "RLP item needs {end} bytes but only {} remain",
            buf.len()
        ));
    }
    let payload = &buf[header..end];
    if !is_list && len == 1 && header == 1 && payload[0] < 0x80 {
        return Err("non-canonical RLP: single byte below 0x80 with a string header".into());
    }
    let item = if is_list {
        Item::List {
            payload,
            encoded: &buf[..end],
        }
    } else {
        Item::Bytes(payload)
    };
    Ok((item, &buf[end..]))
}

fn long_len(buf: &[u8], n: usize) -> Result<usize, String> {
    let bytes = buf
        .get(1..1 + n)
        .ok_or_else(|| "RLP length bytes truncated".to_owned())?;
    if bytes[0] == 0 {
        return Err("non-canonical RLP: length with a leading zero".into());
    }
    if n > std::mem::size_of::<usize>() {
        return Err("RLP length too large".into());
    }
    let len = bytes
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    if len < 56 {
        return Err("non-canonical RLP: long-form length under 56".into());
    }
    Ok(len)
}

/// Decodes `buf` as exactly one item, with nothing after it.
pub(crate) fn decode_exact(buf: &[u8]) -> Result<Item<'_>, String> {
    let (item, rest) = decode(buf)?;
    if !rest.is_empty() {
        return Err(format!(
            "{} trailing byte(s) after the RLP item",
            rest.len()
        ));
    }
    Ok(item)
}

/// Decodes every item of a list payload.
pub(crate) fn list_items(mut payload: &[u8]) -> Result<Vec<Item<'_>>, String> {
    let mut items = Vec::with_capacity(17);
    while !payload.is_empty() {
        let (item, rest) = decode(payload)?;
        items.push(item);
        payload = rest;
    }
    Ok(items)
}

/// Reads a byte string as a canonical big-endian unsigned integer of at most `max` bytes.
pub(crate) fn uint<'a>(item: Item<'a>, max: usize, what: &str) -> Result<&'a [u8], String> {
    let Item::Bytes(b) = item else {
        return Err(format!("{what} is a list, expected an integer"));
    };
    if b.len() > max {
        return Err(format!(
            "{what} is {} bytes, at most {max} allowed",
            b.len()
        ));
    }
    if b.first() == Some(&0) {
        return Err(format!("{what} has a leading zero byte"));
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_strings_and_lists() {
        assert_eq!(decode_exact(&[0x05]), Ok(Item::Bytes(&[0x05])));
        assert_eq!(decode_exact(&[0x80]), Ok(Item::Bytes(&[])));
        assert_eq!(decode_exact(&[0x82, 1, 2]), Ok(Item::Bytes(&[1, 2])));
        let list = [0xc2, 0x01, 0x02];
        let Ok(Item::List { payload, encoded }) = decode_exact(&list) else {
            panic!("not a list")
        };
        assert_eq!(encoded, &list);
        assert_eq!(
            list_items(payload),
            Ok(vec![Item::Bytes(&[1]), Item::Bytes(&[2])])
        );
        let mut long = vec![0xb8, 60];
        long.extend([7u8; 60]);
        assert_eq!(decode_exact(&long), Ok(Item::Bytes(&[7u8; 60])));
    }

    #[test]
    fn rejects_non_canonical_and_truncated() {
        assert!(decode_exact(&[0x81, 0x05]).is_err());
        assert!(decode_exact(&[0xb8, 3, 1, 2, 3]).is_err());
        assert!(decode_exact(&[0xb9, 0, 60]).is_err());
        assert!(decode_exact(&[0x83, 1, 2]).is_err());
        assert!(decode_exact(&[0x01, 0x02]).is_err());
        assert!(decode_exact(&[]).is_err());
        assert!(uint(Item::Bytes(&[0, 1]), 8, "x").is_err());
    }
}
