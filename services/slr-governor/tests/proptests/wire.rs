//! The bytes generator of every RPC: arbitrary bytes, well-formed protobuf
//! of any fields, and encoded near-valid requests with bytes edited.

use std::fmt::Debug;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use prost::Message;

use crate::strategies::junk;

/// One protobuf field with any number and wire type, and any payload.
fn wire_leaf() -> BoxedStrategy<Vec<u8>> {
    use prost::encoding::{WireType, encode_key, encode_varint};
    (
        1u32..16,
        prop_oneof![
            any::<u64>().prop_map(|n| (WireType::Varint, n.to_le_bytes().to_vec())),
            junk().prop_map(|s| (WireType::LengthDelimited, s.into_bytes())),
            vec(any::<u8>(), 0..32).prop_map(|b| (WireType::LengthDelimited, b)),
            any::<u32>().prop_map(|n| (WireType::ThirtyTwoBit, n.to_le_bytes().to_vec())),
            any::<u64>().prop_map(|n| (WireType::SixtyFourBit, n.to_le_bytes().to_vec())),
        ],
    )
        .prop_map(|(tag, (wire, payload))| {
            let mut out = Vec::new();
            encode_key(tag, wire, &mut out);
            match wire {
                WireType::Varint => {
                    let mut n = [0u8; 8];
                    n.copy_from_slice(&payload);
                    encode_varint(u64::from_le_bytes(n), &mut out);
                }
                WireType::LengthDelimited => {
                    encode_varint(payload.len() as u64, &mut out);
                    out.extend_from_slice(&payload);
                }
                _ => out.extend_from_slice(&payload),
            }
            out
        })
        .boxed()
}

/// A well-formed protobuf message of any fields, some of them nested
/// messages: it decodes into a request more often than random bytes do.
fn wire_message() -> BoxedStrategy<Vec<u8>> {
    use prost::encoding::{WireType, encode_key, encode_varint};
    let nested = (1u32..16, vec(wire_leaf(), 0..5)).prop_map(|(tag, fields)| {
        let inner = fields.concat();
        let mut out = Vec::new();
        encode_key(tag, WireType::LengthDelimited, &mut out);
        encode_varint(inner.len() as u64, &mut out);
        out.extend_from_slice(&inner);
        out
    });
    vec(prop_oneof![3 => wire_leaf(), 1 => nested], 0..8)
        .prop_map(|fields| fields.concat())
        .boxed()
}

/// Arbitrary bytes, well-formed protobuf of any fields, and encoded
/// near-valid requests with bytes flipped, inserted or cut off.
pub fn bytes_of<R: Message + Debug + 'static>(
    structured: BoxedStrategy<R>,
) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..256),
        2 => wire_message(),
        2 => (
            structured,
            vec((any::<Index>(), any::<u8>(), any::<bool>()), 0..3),
            prop_oneof![3 => Just(None), 1 => any::<Index>().prop_map(Some)],
        )
            .prop_map(|(message, edits, cut)| {
                let mut bytes = message.encode_to_vec();
                for (at, byte, insert) in edits {
                    if insert || bytes.is_empty() {
                        let at = at.index(bytes.len() + 1);
                        bytes.insert(at, byte);
                    } else {
                        let at = at.index(bytes.len());
                        bytes[at] = byte;
                    }
                }
                if let Some(cut) = cut
                    && !bytes.is_empty()
                {
                    bytes.truncate(cut.index(bytes.len()));
                }
                bytes
            }),
    ]
    .boxed()
}
