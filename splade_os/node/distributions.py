"""The engines a local node can run, and their distributions assembled from Maven Central.

Each engine publishes an `integ-test-zip` distribution: the server (lib/, bin/, config/) without a bundled JDK.
OpenSearch 2.x's zip holds only the transport-netty4 module, so we add the modules splade-os needs:
`mapper-extras` (rank_features, rank_feature query), `analysis-common` (standard analyzers such as `english`)
and `lang-painless`, which analysis-common extends. OpenSearch 3.x's zip already has them. Elasticsearch's zip
holds apm, transport-netty4, x-pack-core and x-pack-security; its native sparse field is `sparse_vector`, and
neither mapper-extras nor analysis-common is published for it, so nothing is added.

Everything is fetched with `mvn` once and cached as `<home>/dist/<engine>-<version>/`; later starts reuse it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from splade_os.errors import NodeError
from splade_os.node.java import JavaRange

MARKER = ".splade-os-assembled"
_PLUGIN_GROUP = "org.opensearch.plugin"
SECURITY_PLUGIN = "opensearch-security"

_PAINLESS_POLICY = """grant {
  // needed to generate runtime classes
  permission java.lang.RuntimePermission "createClassLoader";
  // needed to find the classloader to load allowlisted classes from
  permission java.lang.RuntimePermission "getClassLoader";
};
"""


@dataclass(frozen=True)
class Module:
    """One module to add to `modules/<name>/`; `artifact` is its artifactId under org.opensearch.plugin."""

    name: str
    artifact: str
    classname: str
    description: str
    extended: str = ""
    policy: str = ""


MODULES: tuple[Module, ...] = (
    Module(
        "lang-painless",
        "lang-painless",
        "org.opensearch.painless.PainlessPlugin",
        "An easy, safe and fast scripting language for OpenSearch",
        policy=_PAINLESS_POLICY,
    ),
    Module(
        "analysis-common",
        "analysis-common",
        "org.opensearch.analysis.common.CommonAnalysisPlugin",
        'Adds "built in" analyzers to OpenSearch.',
        extended="lang-painless",
    ),
    Module(
        "mapper-extras",
        "mapper-extras-client",
        "org.opensearch.index.mapper.MapperExtrasPlugin",
        "Adds advanced field mappers",
    ),
)
"""lang-painless comes first: it takes every fetched jar that no other module claims (its dependencies)."""

DESCRIPTOR_KEYS = (
    "name",
    "description",
    "version",
    "opensearch.version",
    "java.version",
    "classname",
    "extended.plugins",
)


def _major_minor(version: str) -> tuple[int, int]:
    parts = [int(p) for p in re.findall(r"[0-9]+", version)[:2]]
    return (parts + [0, 0])[0], (parts + [0, 0])[1]


@dataclass(frozen=True)
class Distribution:
    """What differs between OpenSearch and Elasticsearch when assembling and running a node."""

    name: str
    title: str
    zip_group: str
    default_version: str
    main_class: str
    """Part of the server JVM's command line: tells our node from a recycled pid."""
    config_file: str
    java_home_env: str
    path_conf_env: str
    tmpdir_env: str
    java_opts_env: str
    extra_settings: dict[str, str] = field(default_factory=dict)
    extra_jvm_options: tuple[str, ...] = ()

    @property
    def script(self) -> str:
        return self.name

    def java_range(self, version: str) -> JavaRange:
        """The Java feature versions `version` runs on."""
        major, minor = _major_minor(version)
        if self.name == "opensearch":
            if major >= 3:
                return JavaRange(21)
            return JavaRange(11, 23)  # 1.x/2.x install a security manager, which Java 24 removed
        if major >= 9:
            return JavaRange(21)
        if major == 8:
            # 8.18 replaced the security manager with entitlements; older 8.x stop at 23.
            return JavaRange(17) if minor >= 18 else JavaRange(17, 23)
        return JavaRange(11, 23)

    def modules_to_add(self, version: str) -> tuple[Module, ...]:
        """The modules this version's zip lacks and splade-os needs: only OpenSearch before 3.0."""
        if self.name == "opensearch" and _major_minor(version)[0] < 3:
            return MODULES
        return ()

    def coordinates(self, version: str, *, secure: bool = False) -> list[str]:
        """What `pom` fetches, for error messages."""
        mods = [f"{_PLUGIN_GROUP}:{m.artifact}:{version}" for m in self.modules_to_add(version)]
        return [f"{self.zip_group}:{self.name}:{version}:zip", *mods, *self.security_plugin(version, secure)]

    def security_plugin(self, version: str, secure: bool) -> list[str]:
        """The plugin a secured node adds: OpenSearch's security plugin (Elasticsearch's zip has x-pack security)."""
        return [f"{_PLUGIN_GROUP}:{SECURITY_PLUGIN}:{version}.0:zip"] if secure and self.name == "opensearch" else []


OPENSEARCH = Distribution(
    name="opensearch",
    title="OpenSearch",
    zip_group="org.opensearch.distribution.integ-test-zip",
    default_version="2.19.6",
    main_class="org.opensearch.bootstrap.OpenSearch",
    config_file="opensearch.yml",
    java_home_env="OPENSEARCH_JAVA_HOME",
    path_conf_env="OPENSEARCH_PATH_CONF",
    tmpdir_env="OPENSEARCH_TMPDIR",
    java_opts_env="OPENSEARCH_JAVA_OPTS",
)
ELASTICSEARCH = Distribution(
    name="elasticsearch",
    title="Elasticsearch",
    zip_group="org.elasticsearch.distribution.integ-test-zip",
    default_version="9.2.0",
    main_class="org.elasticsearch.bootstrap.Elasticsearch",
    config_file="elasticsearch.yml",
    java_home_env="ES_JAVA_HOME",
    path_conf_env="ES_PATH_CONF",
    tmpdir_env="ES_TMPDIR",
    java_opts_env="ES_JAVA_OPTS",
    extra_settings={"xpack.security.enabled": "false"},
    # Elasticsearch attaches its entitlement agent to itself at boot; the JDK gives that 10 s, which a busy
    # 2-core machine starting several nodes can exceed ("Unable to attach entitlement agent").
    extra_jvm_options=("-Dsun.tools.attach.attachTimeout=120000",),
)
DISTRIBUTIONS: dict[str, Distribution] = {e.name: e for e in (OPENSEARCH, ELASTICSEARCH)}
DEFAULT_ENGINE = OPENSEARCH
DEFAULT_VERSION = OPENSEARCH.default_version


def distribution_named(name: str) -> Distribution:
    try:
        return DISTRIBUTIONS[name.strip().lower()]
    except KeyError:
        known = ", ".join(sorted(DISTRIBUTIONS))
        raise NodeError(f"checking the engine failed: {name!r} is not one of {known}") from None


# ------------------------------------------------------------------------------------------- rendering


def descriptor(module: Module, version: str, *, java_version: str = "11") -> str:
    """plugin-descriptor.properties; OpenSearch refuses unknown keys, so only DESCRIPTOR_KEYS appear."""
    values = {
        "name": module.name,
        "description": module.description,
        "version": version,
        "opensearch.version": version,
        "java.version": java_version,
        "classname": classname(module, version),
        "extended.plugins": module.extended,
    }
    return "".join(f"{key}={values[key]}\n" for key in DESCRIPTOR_KEYS)


def classname(module: Module, version: str) -> str:
    # OpenSearch 3.x renamed the module entry points to *ModulePlugin.
    if _major_minor(version)[0] >= 3 and module.classname.endswith("Plugin"):
        return module.classname[: -len("Plugin")] + "ModulePlugin"
    return module.classname


def pom(version: str, engine: Distribution = OPENSEARCH, *, secure: bool = False) -> str:
    """A throwaway pom whose dependencies are exactly the files to fetch.

    lang-painless keeps its own dependencies (painless-spi, antlr4, asm) but not the server jar and its
    libraries, which lib/ already has (a jar in both places stops the node with "jar hell").
    """
    deps = [_dependency(engine.zip_group, engine.name, version, kind="zip", exclude="*:*")]
    for module in engine.modules_to_add(version):
        exclude = "org.opensearch:opensearch" if module.name == "lang-painless" else "*:*"
        deps.append(_dependency(_PLUGIN_GROUP, module.artifact, version, exclude=exclude))
    for plugin in engine.security_plugin(version, secure):
        group, artifact, plugin_version, kind = plugin.split(":")
        deps.append(_dependency(group, artifact, plugin_version, kind=kind, exclude="*:*"))
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        f"  <groupId>splade-os</groupId><artifactId>{engine.name}-node</artifactId><version>0</version>\n"
        "  <packaging>pom</packaging>\n"
        f"  <dependencies>\n{''.join(deps)}  </dependencies>\n"
        "</project>\n"
    )


def _dependency(group: str, artifact: str, version: str, *, kind: str = "jar", exclude: str) -> str:
    ex_group, ex_artifact = exclude.split(":")
    return (
        f"    <dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>"
        f"<version>{version}</version><type>{kind}</type>\n"
        f"      <exclusions><exclusion><groupId>{ex_group}</groupId><artifactId>{ex_artifact}</artifactId>"
        "</exclusion></exclusions></dependency>\n"
    )


def coordinates(version: str, engine: Distribution = OPENSEARCH) -> list[str]:
    return engine.coordinates(version)


# ------------------------------------------------------------------------------------------- assembly


def dist_dir(home: Path, version: str, engine: Distribution = OPENSEARCH, *, secure: bool = False) -> Path:
    """A secured OpenSearch has a distribution of its own (the plugin installed); Elasticsearch shares one."""
    suffix = "-secure" if engine.security_plugin(version, secure) else ""
    return home / "dist" / f"{engine.name}-{version}{suffix}"


_VERSION = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+[0-9A-Za-z.-]*")


def check_version(version: str, engine: Distribution = OPENSEARCH) -> None:
    if not _VERSION.fullmatch(version):
        raise NodeError(f"checking the {engine.title} version failed: {version!r} is not like {engine.default_version}")


def ensure_distribution(
    version: str,
    home: Path,
    engine: Distribution = OPENSEARCH,
    *,
    mvn_env: dict[str, str] | None = None,
    secure: bool = False,
    install_security: Callable[[Path, Path], None] | None = None,
) -> Path:
    """The assembled distribution for `version`, built with mvn only when the cache lacks it.

    With `secure`, OpenSearch's security plugin is fetched too and `install_security(dist, jars)` installs it.
    """
    check_version(version, engine)
    target = dist_dir(home, version, engine, secure=secure)
    modules = engine.modules_to_add(version)
    plugins = engine.security_plugin(version, secure)
    if _assembled(target, modules, plugins):
        return target
    staging = home / "dist" / f".staging-{engine.name}-{version}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        jars = fetch_artifacts(version, staging, engine, mvn_env=mvn_env, secure=secure)
        dist = _unpack(jars / f"{engine.name}-{version}.zip", staging, engine)
        if modules:
            assemble_modules(dist, jars, version, modules)
        if plugins and install_security is not None:
            install_security(dist, jars)
        (dist / MARKER).write_text(_marker_text(modules, plugins))
        _make_world_readable(dist)
        if not _assembled(target, modules, plugins):  # another start may have finished first
            shutil.rmtree(target, ignore_errors=True)
            dist.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


SECURITY_SETUP = "security plugin without its demo configuration"
"""Marks a secured distribution: one an older splade-os assembled ran the plugin's demo installer (public keys and
admin certificate, copied into every node's config), so it no longer counts as assembled and is rebuilt."""


def _marker_text(modules: tuple[Module, ...] = MODULES, plugins: Sequence[str] = ()) -> str:
    # A change in the module list invalidates older caches.
    setup = [SECURITY_SETUP] if plugins else []
    return "\n".join([*(m.name for m in modules), *plugins, *setup]) + "\n"


def _assembled(dist: Path, modules: tuple[Module, ...] = MODULES, plugins: Sequence[str] = ()) -> bool:
    marker = dist / MARKER
    return marker.is_file() and marker.read_text() == _marker_text(modules, plugins)


def fetch_artifacts(
    version: str,
    staging: Path,
    engine: Distribution = OPENSEARCH,
    *,
    mvn_env: dict[str, str] | None = None,
    secure: bool = False,
) -> Path:
    """Download the zip and module jars into staging/jars with one mvn run; returns that folder."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise NodeError(f"fetching {engine.title} artifacts failed: `mvn` is not on PATH (install Maven)")
    (staging / "pom.xml").write_text(pom(version, engine, secure=secure))
    jars = staging / "jars"
    cmd = [mvn, "-B", "-q", "-f", str(staging / "pom.xml"), "dependency:copy-dependencies", f"-DoutputDirectory={jars}"]
    env = mvn_env if mvn_env is not None else dict(os.environ)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise NodeError(
            f"fetching {', '.join(engine.coordinates(version, secure=secure))} with mvn failed: "
            + _mvn_error(proc.stdout + proc.stderr)
        )
    return jars


def _unpack(archive: Path, staging: Path, engine: Distribution = OPENSEARCH) -> Path:
    """Unzip keeping the unix modes (zipfile drops them, and bin/* must stay executable)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                path = Path(zf.extract(info, staging))
                mode = (info.external_attr >> 16) & 0o777
                if mode and not info.is_dir():
                    path.chmod(mode)
    except (OSError, zipfile.BadZipFile) as err:
        raise NodeError(f"unpacking {archive} failed: {err}") from err
    tops = [p for p in staging.iterdir() if p.is_dir() and p.name.startswith(f"{engine.name}-")]
    if len(tops) != 1 or not (tops[0] / "bin" / engine.script).is_file():
        raise NodeError(f"unpacking {archive} failed: no {engine.name}-*/bin/{engine.script} inside")
    for script in (tops[0] / "bin").iterdir():
        script.chmod(script.stat().st_mode | 0o755)
    return tops[0]


def assemble_modules(dist: Path, jars: Path, version: str, modules: tuple[Module, ...] = MODULES) -> None:
    """Sort fetched jars into modules/<name>/, skipping any jar lib/ already has, and write descriptors."""
    in_lib = {p.name for p in (dist / "lib").glob("*.jar")}
    available = sorted(p for p in jars.glob("*.jar") if p.name not in in_lib)
    claimed = {p for m in modules for p in available if p.name.startswith(f"{m.artifact}-{version}")}
    for module in modules:
        folder = dist / "modules" / module.name
        folder.mkdir(parents=True, exist_ok=True)
        own = [p for p in available if p.name.startswith(f"{module.artifact}-{version}")]
        if not own:
            raise NodeError(f"assembling module {module.name} failed: no {module.artifact} jar was fetched")
        if module.name == "lang-painless":
            own += [p for p in available if p not in claimed]
        for jar in own:
            shutil.copy2(jar, folder / jar.name)
        (folder / "plugin-descriptor.properties").write_text(descriptor(module, version))
        if module.policy:
            (folder / "plugin-security.policy").write_text(module.policy)


def _make_world_readable(root: Path) -> None:
    # The node runs as another user: it must read every file and enter every folder.
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        extra = 0o555 if path.is_dir() or os.access(path, os.X_OK) else 0o444
        path.chmod(path.stat().st_mode | extra)


# -------------------------------------------------------------------------------------------- helpers


_MVN_NOISE = ("re-run maven", "for more information", "[error] [help ", "-e switch", "-x switch")


def _mvn_error(output: str) -> str:
    """The [ERROR] lines that say what went wrong, without colour codes or Maven's generic advice."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in output.splitlines()]
    lines = [re.sub(r"\s*-> \[Help \d+\]$", "", line) for line in lines if line.startswith(("[ERROR]", "[FATAL]"))]
    kept = [line for line in lines if line[7:].strip() and not any(n in line.lower() for n in _MVN_NOISE)]
    return " | ".join(kept[:4]) if kept else tail(output, 15)


def tail(text: str, lines: int) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) if kept else "(no output)"
