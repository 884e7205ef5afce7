#!/usr/bin/env python3
"""The packages a cross sysroot needs, from apt's package records.

Usage: apt-cache dumpavail | sysroot-closure.py ROOT-PACKAGE...

Prints "name=version" per line, the closure of the roots' Depends and
Pre-Depends, limited to what building and running against libraries needs:
packages of the sections libs, libdevel and devel (libraries, headers,
pkg-config files, the C library). Tools, interpreters, data and introspection
packages (python3, perl, gir1.2-*, tzdata...) are never run from a sysroot and
are not followed. Alternatives take the first one that exists; a virtual
package takes its first provider. Each package comes in its newest version.

A package listed in LEAVES is taken without its dependencies: libsoup's .pc
file names sysprof-capture-4, whose only provider (libsysprof-4-dev) also
carries the profiler's GUI and would pull GTK 4, Mesa and LLVM into the
sysroot. If a LEAVES entry stops matching, the closure is only larger.
"""
import re
import sys

SECTIONS = {"libs", "libdevel", "devel"}
LEAVES = {"libsysprof-4-dev"}


def version_key(version):
    """Good enough to pick the newest of a few versions of one package
    (bookworm against bookworm-updates/-security): apt's order for the
    digit and non-digit runs, '~' sorting first."""
    def runs(text):
        out = []
        for digits, other in re.findall(r"(\d+)|(\D+)", text):
            out.append((1, int(digits)) if digits else (0, [(-1 if c == "~" else ord(c)) for c in other]))
        return out
    epoch, _, rest = version.rpartition(":")
    return (int(epoch or 0), runs(rest))


def parse(stream):
    packages, provides = {}, {}
    for block in stream.read().split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        name = fields.get("Package")
        if not name:
            continue
        old = packages.get(name)
        if old is None or version_key(fields.get("Version", "")) > version_key(old.get("Version", "")):
            packages[name] = fields
        for item in fields.get("Provides", "").split(","):
            virtual = item.split("(")[0].strip()
            if virtual:
                provides.setdefault(virtual, []).append(name)
    return packages, provides


def dependencies(fields):
    """Each dependency as its list of alternatives (names only: ':any' and
    version constraints dropped)."""
    out = []
    for key in ("Pre-Depends", "Depends"):
        for dep in filter(None, (d.strip() for d in fields.get(key, "").split(","))):
            out.append([re.split(r"[\s(:]", alt.strip())[0] for alt in dep.split("|")])
    return out


def resolve(alternatives, packages, provides):
    for name in alternatives:
        if name in packages:
            return name
    for name in alternatives:
        if provides.get(name):
            return sorted(provides[name])[0]
    return None


def closure(roots, packages, provides):
    taken, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in taken:
            continue
        fields = packages.get(name)
        if fields is None:
            sys.exit(f"sysroot-closure: no package {name} in the package lists")
        taken.add(name)
        if name in LEAVES:
            continue
        for alternatives in dependencies(fields):
            dep = resolve(alternatives, packages, provides)
            if dep is None:
                sys.exit(f"sysroot-closure: {name} depends on {' | '.join(alternatives)}, which no package provides")
            if dep not in taken and packages[dep].get("Section", "").split("/")[-1] in SECTIONS:
                todo.append(dep)
    return taken


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    packages, provides = parse(sys.stdin)
    roots = [resolve([r], packages, provides) or r for r in sys.argv[1:]]
    for name in sorted(closure(roots, packages, provides)):
        print(f"{name}={packages[name]['Version']}")


if __name__ == "__main__":
    main()
