//! A minimal pickle virtual machine: enough of protocol 2 to read what `torch.save` wrote before
//! torch 1.6. It builds plain values and never imports or calls anything: a `GLOBAL` is kept as
//! a name and `REDUCE` as an inert (callable, args) object, except `collections.OrderedDict()`
//! which becomes a dict so that `SETITEMS` can fill it.
//!
//! Hostile input: every read is bounds-checked (typed error, no panic); containers are shared
//! with `Rc` and copied on write, so memo lookups cost nothing and memory stays bounded by a
//! copy budget proportional to the input; nesting is limited so that dropping a value cannot
//! overflow the stack.

use std::collections::HashMap;
use std::rc::Rc;

use super::FormatError;

/// Deepest nesting accepted. A torch state dict nests about 6 levels.
const MAX_DEPTH: usize = 100;

/// A value built by the VM.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too big for i64: little-endian two's complement bytes, as in `LONG1`.
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<Node<Vec<Value>>>),
    List(Rc<Node<Vec<Value>>>),
    /// Items in insertion order (pickled dicts are small; lookups are linear).
    Dict(Rc<Node<Vec<(Value, Value)>>>),
    Global(Rc<Global>),
    /// The result of `REDUCE` (and `BUILD` state): what Python would have called, not called.
    Object(Rc<Node<Object>>),
    PersistentId(Rc<Node<Value>>),
}

/// A container with its nesting depth (computed once, exact because shared containers are
/// copied before they are modified).
#[derive(Debug, Clone, PartialEq)]
pub struct Node<T> {
    pub depth: usize,
    pub items: T,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    pub module: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub callable: Value,
    pub args: Value,
    pub state: Option<Value>,
}

impl Value {
    fn depth(&self) -> usize {
        match self {
            Value::Tuple(n) | Value::List(n) => n.depth,
            Value::Dict(n) => n.depth,
            Value::Object(n) => n.depth,
            Value::PersistentId(n) => n.depth,
            _ => 0,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Items of a tuple or a list.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(n) | Value::List(n) => Some(&n.items),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(n) => Some(&n.items),
            _ => None,
        }
    }

    pub fn is_global(&self, module: &str, name: &str) -> bool {
        matches!(self, Value::Global(g) if g.module == module && g.name == name)
    }
}

/// Parses one pickle from the start of `data`. Returns the value and the number of bytes read
/// (up to and including `STOP`), so that several pickles in a row can be read.
pub fn parse(data: &[u8]) -> Result<(Value, usize), FormatError> {
    let mut vm = Vm {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        copy_budget: data.len() + 1024,
    };
    let value = vm.run()?;
    Ok((value, vm.pos))
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    /// Items that may still be copied by copy-on-write; keeps memory linear in the input.
    copy_budget: usize,
}

impl<'a> Vm<'a> {
    fn run(&mut self) -> Result<Value, FormatError> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    self.u8()?;
                }
                b'.' => return self.pop(at), // STOP
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    // POP
                    self.pop(at)?;
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(i64::from(v)));
                }
                b'M' => {
                    let b = self.take(2)?;
                    self.stack
                        .push(Value::Int(i64::from(u16::from_le_bytes([b[0], b[1]]))));
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.array4()?);
                    self.stack.push(Value::Int(i64::from(v)));
                }
                0x8a => {
                    // LONG1
                    let n = usize::from(self.u8()?);
                    let bytes = self.take(n)?;
                    self.stack.push(long(bytes));
                }
                0x8b => {
                    // LONG4
                    let n = self.len4(at)?;
                    let bytes = self.take(n)?;
                    self.stack.push(long(bytes));
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.stack.push(Value::Float(f64::from_be_bytes(a)));
                }
                b'X' => {
                    let n = self.len4(at)?;
                    self.push_str(n, at)?;
                }
                0x8c => {
                    // SHORT_BINUNICODE
                    let n = usize::from(self.u8()?);
                    self.push_str(n, at)?;
                }
                b'U' | b'C' => {
                    // SHORT_BINSTRING, SHORT_BINBYTES
                    let n = usize::from(self.u8()?);
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(b.into()));
                }
                b'T' | b'B' => {
                    // BINSTRING, BINBYTES
                    let n = self.len4(at)?;
                    let b = self.take(n)?;
                    self.stack.push(Value::Bytes(b.into()));
                }
                b'c' => {
                    let module = self.line(at)?;
                    let name = self.line(at)?;
                    self.stack
                        .push(Value::Global(Rc::new(Global { module, name })));
                }
                b')' => self.stack.push(seq_value(Vec::new(), true)),
                b']' => self.stack.push(seq_value(Vec::new(), false)),
                b'}' => self.stack.push(dict_value(Vec::new())),
                b't' => {
                    let items = self.pop_mark(at)?;
                    let v = self.checked(seq_value(items, true), at)?;
                    self.stack.push(v);
                }
                0x85..=0x87 => {
                    // TUPLE1..TUPLE3
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err(underflow(at));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let v = self.checked(seq_value(items, true), at)?;
                    self.stack.push(v);
                }
                b'q' => {
                    let i = u32::from(self.u8()?);
                    self.memoize(i, at)?;
                }
                b'r' => {
                    let i = u32::from_le_bytes(self.array4()?);
                    self.memoize(i, at)?;
                }
                0x94 => {
                    // MEMOIZE
                    let i = u32::try_from(self.memo.len()).map_err(|_| malformed(at, "memo"))?;
                    self.memoize(i, at)?;
                }
                b'h' => {
                    let i = u32::from(self.u8()?);
                    self.memo_get(i, at)?;
                }
                b'j' => {
                    let i = u32::from_le_bytes(self.array4()?);
                    self.memo_get(i, at)?;
                }
                b'Q' => {
                    let pid = self.pop(at)?;
                    let depth = pid.depth() + 1;
                    let v =
                        self.checked(Value::PersistentId(Rc::new(Node { depth, items: pid })), at)?;
                    self.stack.push(v);
                }
                b'R' => {
                    let args = self.pop(at)?;
                    let callable = self.pop(at)?;
                    let v = reduce(callable, args);
                    let v = self.checked(v, at)?;
                    self.stack.push(v);
                }
                b'b' => {
                    let state = self.pop(at)?;
                    let target = self.pop(at)?;
                    let v = self.build(target, state, at)?;
                    self.stack.push(v);
                }
                b'a' => {
                    let item = self.pop(at)?;
                    self.append(vec![item], at)?;
                }
                b'e' => {
                    let items = self.pop_mark(at)?;
                    self.append(items, at)?;
                }
                b's' => {
                    let value = self.pop(at)?;
                    let key = self.pop(at)?;
                    self.set_items(vec![key, value], at)?;
                }
                b'u' => {
                    let items = self.pop_mark(at)?;
                    self.set_items(items, at)?;
                }
                _ => {
                    return Err(FormatError::UnknownOpcode {
                        opcode: op,
                        offset: at,
                    })
                }
            }
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(FormatError::Truncated { offset: self.pos })?;
        let data: &'a [u8] = self.data;
        self.pos = end;
        Ok(&data[end - n..end])
    }

    fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.take(1)?[0])
    }

    fn array4(&mut self) -> Result<[u8; 4], FormatError> {
        let b = self.take(4)?;
        Ok([b[0], b[1], b[2], b[3]])
    }

    /// A 4-byte length; lengths past the end of the data are caught by `take`.
    fn len4(&mut self, at: usize) -> Result<usize, FormatError> {
        let n = i32::from_le_bytes(self.array4()?);
        usize::try_from(n).map_err(|_| malformed(at, "negative length"))
    }

    fn line(&mut self, at: usize) -> Result<String, FormatError> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(FormatError::Truncated { offset: self.pos })?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| malformed(at, "GLOBAL not UTF-8"))?;
        let s = s.to_string();
        self.pos += n + 1;
        Ok(s)
    }

    fn push_str(&mut self, n: usize, at: usize) -> Result<(), FormatError> {
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).map_err(|_| malformed(at, "string not UTF-8"))?;
        self.stack.push(Value::Str(s.into()));
        Ok(())
    }

    fn pop(&mut self, at: usize) -> Result<Value, FormatError> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(malformed(at, "pop across a MARK"));
        }
        self.stack.pop().ok_or_else(|| underflow(at))
    }

    fn pop_mark(&mut self, at: usize) -> Result<Vec<Value>, FormatError> {
        let m = self.marks.pop().ok_or_else(|| malformed(at, "no MARK"))?;
        if m > self.stack.len() {
            return Err(underflow(at));
        }
        Ok(self.stack.split_off(m))
    }

    fn memoize(&mut self, i: u32, at: usize) -> Result<(), FormatError> {
        let top = self.stack.last().ok_or_else(|| underflow(at))?.clone();
        self.memo.insert(i, top);
        Ok(())
    }

    fn memo_get(&mut self, i: u32, at: usize) -> Result<(), FormatError> {
        let v = self
            .memo
            .get(&i)
            .ok_or_else(|| malformed(at, &format!("memo key {i} not set")))?
            .clone();
        self.stack.push(v);
        Ok(())
    }

    fn checked(&self, v: Value, at: usize) -> Result<Value, FormatError> {
        if v.depth() > MAX_DEPTH {
            return Err(malformed(at, "nesting too deep"));
        }
        Ok(v)
    }

    /// Takes a container for modification, copying it if it is shared (memo or another
    /// container holds it), within the copy budget.
    fn unshare<T: Clone>(
        &mut self,
        rc: &mut Rc<Node<T>>,
        len: usize,
        at: usize,
    ) -> Result<(), FormatError> {
        if Rc::strong_count(rc) > 1 {
            self.copy_budget = self
                .copy_budget
                .checked_sub(len)
                .ok_or_else(|| malformed(at, "too much copying (hostile pickle?)"))?;
            *rc = Rc::new((**rc).clone());
        }
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>, at: usize) -> Result<(), FormatError> {
        let mut target = self.pop(at)?;
        let Value::List(rc) = &mut target else {
            return Err(malformed(at, "APPEND to a non-list"));
        };
        let len = rc.items.len();
        self.unshare(rc, len, at)?;
        let node = Rc::get_mut(rc).ok_or_else(|| malformed(at, "shared list"))?;
        for item in items {
            node.depth = node.depth.max(item.depth() + 1);
            node.items.push(item);
        }
        let target = self.checked(target, at)?;
        self.stack.push(target);
        Ok(())
    }

    fn set_items(&mut self, items: Vec<Value>, at: usize) -> Result<(), FormatError> {
        if !items.len().is_multiple_of(2) {
            return Err(malformed(at, "odd number of SETITEMS values"));
        }
        let mut target = self.pop(at)?;
        let Value::Dict(rc) = &mut target else {
            return Err(malformed(at, "SETITEM on a non-dict"));
        };
        let len = rc.items.len();
        self.unshare(rc, len, at)?;
        let node = Rc::get_mut(rc).ok_or_else(|| malformed(at, "shared dict"))?;
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            node.depth = node.depth.max(k.depth().max(v.depth()) + 1);
            match node.items.iter_mut().find(|(old, _)| *old == k) {
                Some(slot) => slot.1 = v,
                None => node.items.push((k, v)),
            }
        }
        let target = self.checked(target, at)?;
        self.stack.push(target);
        Ok(())
    }

    /// `BUILD`: an object keeps its state for the caller. Anything else is returned as is: for
    /// a state dict (an `OrderedDict`) the state only sets its `_metadata` attribute (module
    /// versions), which inference does not need.
    fn build(&mut self, target: Value, state: Value, at: usize) -> Result<Value, FormatError> {
        match target {
            Value::Object(mut rc) => {
                self.unshare(&mut rc, 1, at)?;
                let node = Rc::get_mut(&mut rc).ok_or_else(|| malformed(at, "shared object"))?;
                node.depth = node.depth.max(state.depth() + 1);
                node.items.state = Some(state);
                self.checked(Value::Object(rc), at)
            }
            other => Ok(other),
        }
    }
}

fn long(bytes: &[u8]) -> Value {
    if bytes.len() <= 8 {
        let fill = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
            0xff
        } else {
            0
        };
        let mut a = [fill; 8];
        a[..bytes.len()].copy_from_slice(bytes);
        Value::Int(i64::from_le_bytes(a))
    } else {
        Value::BigInt(bytes.into())
    }
}

fn seq_value(items: Vec<Value>, tuple: bool) -> Value {
    let depth = items.iter().map(Value::depth).max().unwrap_or(0) + 1;
    let node = Rc::new(Node { depth, items });
    if tuple {
        Value::Tuple(node)
    } else {
        Value::List(node)
    }
}

fn dict_value(items: Vec<(Value, Value)>) -> Value {
    Value::Dict(Rc::new(Node { depth: 1, items }))
}

/// `REDUCE`: `collections.OrderedDict()` is the only call made (to an empty dict, so that the
/// following `SETITEMS` work); anything else stays an inert object for the caller to read.
fn reduce(callable: Value, args: Value) -> Value {
    let no_args = args.as_seq().is_some_and(<[Value]>::is_empty);
    if no_args && callable.is_global("collections", "OrderedDict") {
        return dict_value(Vec::new());
    }
    let depth = callable.depth().max(args.depth()) + 1;
    Value::Object(Rc::new(Node {
        depth,
        items: Object {
            callable,
            args,
            state: None,
        },
    }))
}

fn malformed(offset: usize, what: &str) -> FormatError {
    FormatError::Malformed {
        offset,
        what: what.to_string(),
    }
}

fn underflow(offset: usize) -> FormatError {
    malformed(offset, "stack underflow")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn str_(s: &str) -> Value {
        Value::Str(s.into())
    }

    #[test]
    fn reads_scalars_of_every_width() {
        // PROTO 2, MARK, BININT1 7, BININT2 0x1234, BININT -2, LONG1 (2 bytes) -300,
        // BINFLOAT 1.5, NONE, NEWTRUE, BINUNICODE "hé", SHORT_BINSTRING b"ab", TUPLE, STOP
        let mut p = vec![0x80, 2, b'(', b'K', 7, b'M', 0x34, 0x12, b'J'];
        p.extend((-2i32).to_le_bytes());
        p.extend([0x8a, 2]);
        p.extend(&(-300i16).to_le_bytes());
        p.push(b'G');
        p.extend(1.5f64.to_be_bytes());
        p.extend([b'N', 0x88, b'X', 3, 0, 0, 0, b'h', 0xc3, 0xa9]);
        p.extend([b'U', 2, b'a', b'b', b't', b'.']);
        let (v, used) = parse(&p).unwrap();
        assert_eq!(used, p.len());
        let items = v.as_seq().unwrap();
        assert_eq!(items[0], Value::Int(7));
        assert_eq!(items[1], Value::Int(0x1234));
        assert_eq!(items[2], Value::Int(-2));
        assert_eq!(items[3], Value::Int(-300));
        assert_eq!(items[4], Value::Float(1.5));
        assert_eq!(items[5], Value::None);
        assert_eq!(items[6], Value::Bool(true));
        assert_eq!(items[7], str_("hé"));
        assert_eq!(items[8], Value::Bytes(b"ab".as_slice().into()));
    }

    #[test]
    fn ordered_dict_with_memo_and_setitems() {
        // OrderedDict() memoized, filled with {"a": 1, "b": (2, 3)}, then "a" looked up
        // again via BINGET of the key.
        let mut p = vec![0x80, 2];
        p.extend(b"ccollections\nOrderedDict\n");
        p.extend([b'q', 0, b')', b'R', b'q', 1, b'(']);
        p.extend([b'X', 1, 0, 0, 0, b'a', b'q', 2, b'K', 1]);
        p.extend([b'X', 1, 0, 0, 0, b'b', b'K', 2, b'K', 3, 0x86, b'u']);
        p.extend([b'h', 2, b'K', 9, b's', b'.']); // d["a"] = 9 via the memoized key
        let (v, _) = parse(&p).unwrap();
        let d = v.as_dict().unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0], (str_("a"), Value::Int(9)));
        assert_eq!(d[1].1.as_seq().unwrap(), &[Value::Int(2), Value::Int(3)]);
    }

    #[test]
    fn reduce_and_persistent_id_stay_inert() {
        let mut p = vec![0x80, 2];
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n");
        p.extend([
            b'(', b'X', 3, 0, 0, 0, b'k', b'e', b'y', 0x85, b'Q', b'K', 4, b't', b'R', b'.',
        ]);
        let (v, _) = parse(&p).unwrap();
        let Value::Object(o) = v else { panic!("{v:?}") };
        assert!(o
            .items
            .callable
            .is_global("torch._utils", "_rebuild_tensor_v2"));
        let args = o.items.args.as_seq().unwrap();
        let Value::PersistentId(pid) = &args[0] else {
            panic!()
        };
        assert_eq!(pid.items.as_seq().unwrap(), &[str_("key")]);
        assert_eq!(args[1], Value::Int(4));
    }

    #[test]
    fn two_pickles_in_a_row_and_big_long() {
        // The torch magic number is a 10-byte LONG1.
        let mut p = vec![0x80, 2, 0x8a, 10];
        p.extend(&0x1950a86a20f9469cfc6c_u128.to_le_bytes()[..10]);
        p.extend([b'.', 0x80, 2, b'M', 0xe9, 0x03, b'.']);
        let (a, n) = parse(&p).unwrap();
        assert_eq!(n, 15);
        let Value::BigInt(b) = a else { panic!() };
        assert_eq!(&b[..], &0x1950a86a20f9469cfc6c_u128.to_le_bytes()[..10]);
        assert_eq!(parse(&p[n..]).unwrap().0, Value::Int(1001));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(matches!(parse(&[0x80]), Err(FormatError::Truncated { .. })));
        assert!(matches!(
            parse(&[b'X', 0xff, 0xff, 0xff, 0x7f]),
            Err(FormatError::Truncated { .. })
        ));
        assert!(matches!(
            parse(&[b'X', 0xff, 0xff, 0xff, 0xff]),
            Err(FormatError::Malformed { .. })
        ));
        assert!(matches!(
            parse(&[0x80, 2, b'I', b'.']),
            Err(FormatError::UnknownOpcode {
                opcode: b'I',
                offset: 2
            })
        ));
        assert!(matches!(parse(b"t."), Err(FormatError::Malformed { .. })));
        assert!(matches!(
            parse(&[b'h', 5, b'.']),
            Err(FormatError::Malformed { .. })
        ));
        assert!(matches!(
            parse(&[b'K', 1, b's', b'.']),
            Err(FormatError::Malformed { .. })
        ));
        // A million nested 1-tuples: rejected by the depth limit, no stack overflow.
        let mut deep = vec![b'N'];
        deep.extend(std::iter::repeat_n(0x85, 1_000_000));
        deep.push(b'.');
        assert!(matches!(parse(&deep), Err(FormatError::Malformed { .. })));
    }

    #[test]
    fn memo_doubling_is_bounded() {
        // x = []; repeat: memo it, fetch it twice, append one to the other (a copy each time).
        let mut p = vec![b']'];
        for _ in 0..200 {
            p.extend([b'q', 0, b'h', 0, b'a']);
        }
        p.push(b'.');
        match parse(&p) {
            Ok(_) | Err(FormatError::Malformed { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
}
