/*
 * bcryptprimitives.dll for Wine 8.0, which lacks it (Wine 8.13 added it).
 *
 * Rust's standard library takes its random bytes from `ProcessPrng` in this
 * DLL, so without it no Rust program starts under Debian's Wine. This one
 * forwards to advapi32's `SystemFunction036` (RtlGenRandom), which Wine 8.0
 * has. It is a C function, not a `.def` forward: `SystemFunction036` returns
 * a one-byte BOOLEAN and callers of `ProcessPrng` read a four-byte BOOL.
 *
 * Built by .ci/cross with `zig cc -target x86_64-windows-gnu -shared` into
 * the Wine prefix's system32; used for the tests under Wine only.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x7fffffff ? 0x7fffffff : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
