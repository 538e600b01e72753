#!/usr/bin/env python3
"""Assemble the build context of deploy/Containerfile.scratch.

    python3 deploy/scratch-context.py \\
        target/x86_64-unknown-linux-musl/release/slr-governor /tmp/slrgov-context
    podman build -f deploy/Containerfile.scratch -t slr-governor:0.1.0-scratch /tmp/slrgov-context

The context holds exactly two files:

- slr-governor: the static (musl) binary, copied as is;
- rootfs.tar: everything else a FROM scratch image lacks, with exact owners
  and modes. A tarball, because ADD extracts it as written, whereas COPY
  cannot give a directory a mode (podman 4.3 ignores --chmod on
  directories) and chowns the parents it creates:
    etc/passwd, etc/group     root, nobody and nonroot (65532) as in
                              distroless, so HOME resolves to /home/nonroot
                              and a uid lookup finds a name
    etc/ssl/certs/ca-certificates.crt
                              the CA bundle (default: this host's, from
                              Debian's ca-certificates): the AWS SDK verifies
                              STS/IAM/SSM through rustls-native-certs, which
                              reads SSL_CERT_FILE or this standard path
    home/nonroot              0700, owned by 65532: the working directory,
                              writable (the default SQLite data directory
                              ./.slr-governor lands here when the root
                              filesystem is writable)
    tmp                       1777, as in distroless: many things assume it

Every entry has mtime 0 and numeric owners, so the same inputs give the same
layer digest. The binary must be static (no ELF interpreter): FROM scratch
has no libc to load it with.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tarfile
from pathlib import Path

NONROOT = 65532

PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n"
)
GROUP = (
    "root:x:0:\n"
    "nogroup:x:65534:\n"
    f"nonroot:x:{NONROOT}:\n"
)


def is_static_elf(path: Path) -> bool:
    """True for an ELF file without a PT_INTERP program header (no dynamic
    loader), which is what `file` calls "statically linked" or
    "static-pie linked"."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:  # 64-bit, little-endian
        return False
    phoff = int.from_bytes(data[0x20:0x28], "little")
    phentsize = int.from_bytes(data[0x36:0x38], "little")
    phnum = int.from_bytes(data[0x38:0x3A], "little")
    for i in range(phnum):
        p_type = int.from_bytes(data[phoff + i * phentsize:phoff + i * phentsize + 4], "little")
        if p_type == 3:  # PT_INTERP
            return False
    return True


def rootfs_tar(ca_bundle: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def entry(name: str, mode: int, uid: int = 0, data: bytes | None = None) -> None:
            info = tarfile.TarInfo(name)
            info.mode, info.uid, info.gid, info.mtime = mode, uid, uid, 0
            info.uname = info.gname = ""
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))

        entry("etc", 0o755)
        entry("etc/passwd", 0o644, data=PASSWD.encode())
        entry("etc/group", 0o644, data=GROUP.encode())
        entry("etc/ssl", 0o755)
        entry("etc/ssl/certs", 0o755)
        entry("etc/ssl/certs/ca-certificates.crt", 0o644, data=ca_bundle)
        entry("home", 0o755)
        entry("home/nonroot", 0o700, uid=NONROOT)
        entry("tmp", 0o1777)
    return out.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary", type=Path, help="the static slr-governor binary")
    parser.add_argument("context", type=Path, help="the directory to write (created)")
    parser.add_argument("--ca-bundle", type=Path,
                        default=Path("/etc/ssl/certs/ca-certificates.crt"),
                        help="PEM CA bundle to install (default: %(default)s)")
    args = parser.parse_args()

    if not is_static_elf(args.binary):
        print(f"scratch-context.py: {args.binary} is not a static x86-64 ELF binary "
              "(build with --target x86_64-unknown-linux-musl)", file=sys.stderr)
        return 2
    ca_bundle = args.ca_bundle.read_bytes()
    certificates = ca_bundle.count(b"-----BEGIN CERTIFICATE-----")
    if certificates < 10:
        print(f"scratch-context.py: {args.ca_bundle} holds {certificates} certificates; "
              "install ca-certificates", file=sys.stderr)
        return 2

    args.context.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.binary, args.context / "slr-governor")
    (args.context / "slr-governor").chmod(0o755)
    (args.context / "rootfs.tar").write_bytes(rootfs_tar(ca_bundle))
    print(f"context {args.context}: slr-governor ({args.binary.stat().st_size} bytes), "
          f"rootfs.tar ({certificates} CA certificates from {args.ca_bundle})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
