//! Secrets marked for valgrind memcheck (the ctgrind technique).
//!
//! Memcheck reports a conditional branch or a memory address computed from
//! *undefined* bytes. Marking a secret undefined ([`secret`]) turns memcheck
//! into a constant-time checker: any branch or index that depends on the
//! secret, however indirectly, is reported. What the protocol makes public
//! is marked defined again ([`declassify`], [`public`]) before it is looked
//! at.
//!
//! Natively (not under valgrind) every call is a no-op: the client-request
//! sequence leaves every register as it was.

const MAKE_MEM_UNDEFINED: u64 = 0x4D43_0001;
const MAKE_MEM_DEFINED: u64 = 0x4D43_0002;

/// A valgrind client request (the amd64 "magic sequence").
#[cfg(target_arch = "x86_64")]
fn client_request(request: u64, addr: u64, len: u64) -> u64 {
    let args: [u64; 6] = [request, addr, len, 0, 0, 0];
    let mut result: u64 = 0;
    // SAFETY: the rotations of rdi total 128 bits (rdi is unchanged) and
    // `xchg rbx, rbx` is a no-op; natively the sequence does nothing, under
    // valgrind it performs the request described by `args` and writes rdx.
    unsafe {
        core::arch::asm!(
            "rol rdi, 3",
            "rol rdi, 13",
            "rol rdi, 61",
            "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") args.as_ptr(),
            inout("rdx") result,
            inout("rdi") 0u64 => _,
            options(nostack),
        );
    }
    result
}

#[cfg(not(target_arch = "x86_64"))]
fn client_request(_request: u64, _addr: u64, _len: u64) -> u64 {
    0
}

fn mark<T: ?Sized>(value: &T, request: u64) {
    client_request(request, value as *const T as *const u8 as u64, core::mem::size_of_val(value) as u64);
}

/// Marks the bytes of `value` secret (undefined to memcheck).
pub fn secret<T: ?Sized>(value: &T) {
    mark(value, MAKE_MEM_UNDEFINED);
}

/// Marks the bytes of `value` public (defined to memcheck), in place.
pub fn public<T: ?Sized>(value: &T) {
    mark(value, MAKE_MEM_DEFINED);
}

/// Marks `value` public and reads it back through memory, so that the
/// compiler cannot keep using a register copy made before the marking.
pub fn declassify<T: Copy>(value: T) -> T {
    let slot = value;
    mark(&slot, MAKE_MEM_DEFINED);
    // SAFETY: `slot` is a live, initialised local.
    unsafe { core::ptr::read_volatile(&slot) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Natively the requests change nothing.
    #[test]
    fn natively_a_no_op() {
        let v = [1u16, 2, 3];
        secret(&v);
        public(&v);
        assert_eq!(declassify(v), [1, 2, 3]);
    }
}
