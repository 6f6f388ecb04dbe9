#!/usr/bin/env python3
"""The peer side of bench/tpm-ops.bench.ts: the same TPM commands, through tpm2-pytss (ESAPI), on the same swtpm.

Prints one JSON line: {"op": ..., "iterations": N, "usPerOp": mean microseconds per operation}.
Set-up (ESYS_TR for the AK and the NV index, the decrypt key) happens before the clock starts, as on the
TypeScript side. Exit code 3 when tpm2_pytss cannot be imported, so the caller can report the row as skipped.
"""
import argparse
import hashlib
import json
import struct
import sys
import time

try:
    from tpm2_pytss import ESAPI
    from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_SE, TPMA_OBJECT, TPMA_SESSION
    from tpm2_pytss.types import (
        TPM2B_PUBLIC,
        TPM2B_SENSITIVE_CREATE,
        TPMT_PUBLIC,
        TPMT_RSA_DECRYPT,
        TPMT_SIG_SCHEME,
        TPMT_SYM_DEF,
        TPML_PCR_SELECTION,
    )
except ImportError as error:  # pragma: no cover - reported by the caller
    print(json.dumps({"error": f"tpm2_pytss not importable: {error}"}))
    sys.exit(3)

HCL_REPORT_INDEX = 0x01400001
AK_HANDLE = 0x81000003
TPM_CC_POLICY_PCR = 0x17F
PCRS = list(range(8))


def pcr_selection() -> TPML_PCR_SELECTION:
    return TPML_PCR_SELECTION.parse("sha256:" + ",".join(str(p) for p in PCRS))


def policy_pcr_digest(pcr_values: list) -> bytes:
    """PolicyPCR over SHA-256 PCRs 0-7 from an empty policy (TPM 2.0 part 3, 23.7)."""
    bitmap = bytearray(3)
    for p in PCRS:
        bitmap[p // 8] |= 1 << (p % 8)
    selection = struct.pack(">IHB", 1, TPM2_ALG.SHA256, 3) + bytes(bitmap)
    pcr_digest = hashlib.sha256(b"".join(pcr_values)).digest()
    return hashlib.sha256(bytes(32) + struct.pack(">I", TPM_CC_POLICY_PCR) + selection + pcr_digest).digest()


def transfer_key_template(auth_policy: bytes) -> TPM2B_PUBLIC:
    public = TPMT_PUBLIC.parse(
        alg="rsa2048:null:null",
        objectAttributes=TPMA_OBJECT.DECRYPT
        | TPMA_OBJECT.FIXEDTPM
        | TPMA_OBJECT.FIXEDPARENT
        | TPMA_OBJECT.SENSITIVEDATAORIGIN
        | TPMA_OBJECT.NODA,
        nameAlg="sha256",
    )
    public.authPolicy = auth_policy
    return TPM2B_PUBLIC(public)


def read_pcrs(ectx: ESAPI) -> list:
    _, _, digests = ectx.pcr_read(pcr_selection())
    return [bytes(d) for d in digests]


def create_transfer_key(ectx: ESAPI):
    template = transfer_key_template(policy_pcr_digest(read_pcrs(ectx)))
    handle, public, _, _, _ = ectx.create_primary(TPM2B_SENSITIVE_CREATE(), template, ESYS_TR.NULL)
    return handle, public


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tcti", required=True, help='e.g. "swtpm:path=/tmp/x/tpm.sock"')
    parser.add_argument("--op", choices=["hcl", "certify", "decrypt"], required=True)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=1024, help="NV_BUFFER_MAX, as the TPM reports it")
    args = parser.parse_args()

    with ESAPI(args.tcti) as ectx:
        op = None
        cleanup = []
        if args.op == "hcl":
            nv = ectx.tr_from_tpmpublic(HCL_REPORT_INDEX)

            def op():
                nv_public, _ = ectx.nv_read_public(nv)
                size = nv_public.nvPublic.dataSize
                out = bytearray()
                while len(out) < size:
                    n = min(args.chunk, size - len(out))
                    out += bytes(ectx.nv_read(nv, n, len(out)))
                return out

        elif args.op == "certify":
            ak = ectx.tr_from_tpmpublic(AK_HANDLE)

            def op():
                key, _ = create_transfer_key(ectx)
                try:
                    ectx.certify(key, ak, b"", TPMT_SIG_SCHEME(scheme=TPM2_ALG.NULL))
                finally:
                    ectx.flush_context(key)

        else:
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import padding, rsa

            key, public = create_transfer_key(ectx)
            cleanup.append(lambda: ectx.flush_context(key))
            modulus = int.from_bytes(bytes(public.publicArea.unique.rsa), "big")
            ciphertext = (
                rsa.RSAPublicNumbers(65537, modulus)
                .public_key()
                .encrypt(
                    b"\x42" * 32,
                    padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
                )
            )
            scheme = TPMT_RSA_DECRYPT(scheme=TPM2_ALG.OAEP)
            scheme.details.oaep.hashAlg = TPM2_ALG.SHA256
            selection = pcr_selection()

            def op():
                session = ectx.start_auth_session(
                    ESYS_TR.NONE,
                    ESYS_TR.NONE,
                    TPM2_SE.POLICY,
                    TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL),
                    TPM2_ALG.SHA256,
                )
                # As on the TypeScript side: no continueSession, so the TPM ends the session with the decrypt.
                ectx.trsess_set_attributes(session, TPMA_SESSION(0), 0xFF)
                ectx.policy_pcr(session, b"", selection)
                plain = ectx.rsa_decrypt(key, ciphertext, scheme, b"", session1=session)
                if bytes(plain) != b"\x42" * 32:
                    raise RuntimeError("decrypt returned the wrong plaintext")

        try:
            for _ in range(args.warmup):
                op()
            start = time.perf_counter_ns()
            for _ in range(args.iterations):
                op()
            elapsed = time.perf_counter_ns() - start
        finally:
            for c in cleanup:
                c()
    print(json.dumps({"op": args.op, "iterations": args.iterations, "usPerOp": elapsed / args.iterations / 1000}))


if __name__ == "__main__":
    main()
