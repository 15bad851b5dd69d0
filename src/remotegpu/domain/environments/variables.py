"""What users may name things and which environment variables they may set.

Environment names end up in host names, in the ``Host`` line of the ``~/.ssh/config``
block the console offers, and (with apps on their own origins) in URLs: they are
DNS labels, nothing else. Refused, not rewritten: what a user sends is what they get.

Environment variables reach the container's processes, some of which the platform
starts (sshd, JupyterLab) and some of which decide what the container may touch
(the NVIDIA runtime reads ``NVIDIA_VISIBLE_DEVICES``). The platform sets those
itself; users may not. ``RESERVED_PREFIXES`` and ``RESERVED_NAMES`` are the one list
(documented in the README); ``ALLOWED_DESPITE_PREFIX`` lets through a few harmless,
commonly used tuning variables inside reserved families.
"""

from __future__ import annotations

import re

from remotegpu.domain.shared.errors import InvalidInput

# --- names ---------------------------------------------------------------------------------

NAME_MAX = 63
#: A DNS label (RFC 1123), lower case: 1-63 letters, digits and '-', not starting or ending with '-'.
ENV_NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
NAME_RULE = "1-63 lowercase letters, digits or '-', starting and ending with a letter or digit (e.g. 'train-1')"


def check_environment_name(name: str) -> str:
    """``name`` when it is a valid environment name, else InvalidInput (422) naming the rule."""
    if not isinstance(name, str) or not ENV_NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"name must be {NAME_RULE}", code="invalid_name",
            details={"field": "name", "rule": ENV_NAME_RE.pattern},
        )
    return name


def safe_name_from(name: str, taken: set[str], fallback: str = "env") -> str:
    """A valid environment name derived from any old one, unique among ``taken``.

    Deterministic (same inputs, same answer), used by migration 0009 for rows created
    before names were checked: lower case, runs of anything else become '-', trimmed to
    fit; a clash gets ``-2``, ``-3``... Kept in step with the frozen copy in that migration.
    """
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:NAME_MAX].strip("-") or fallback
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        suffix = f"-{n}"
        candidate = base[: NAME_MAX - len(suffix)].rstrip("-") + suffix
    return candidate


# --- environment variables -------------------------------------------------------------------

MAX_VARIABLES = 64
MAX_VALUE_LENGTH = 4096
VARIABLE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

#: Families the platform or the container runtime owns. Matched on the upper-cased name.
RESERVED_PREFIXES: tuple[str, ...] = (
    "NVIDIA_",  # NVIDIA container runtime: which GPUs, driver capabilities
    "CUDA_",  # CUDA_VISIBLE_DEVICES: GPU visibility comes from the allocation only
    "LD_",  # dynamic loader: LD_PRELOAD / LD_LIBRARY_PATH into every process
    "DYLD_",
    "PYTHON",  # PYTHONPATH, PYTHONSTARTUP, PYTHONWARNINGS...: code into every Python process
    "REMOTEGPU_",  # the platform's own (environment id, Jupyter token)
    "JUPYTER_",  # JupyterLab's configuration and token
    "SSH_",  # sshd and its sessions
    "DOCKER_",  # the Docker client/daemon
    "BASH_FUNC_",  # exported shell functions
)
#: Single names with the same reason: the shell and login basics, and variables that
#: make programs load code or run commands.
RESERVED_NAMES: frozenset[str] = frozenset({
    "PATH", "HOME", "SHELL", "USER", "LOGNAME", "HOSTNAME", "PWD", "IFS", "ENV", "BASH_ENV",
    "PROMPT_COMMAND", "GCONV_PATH", "GLIBC_TUNABLES", "BROWSER", "NODE_OPTIONS", "PERL5OPT",
    "PERL5LIB", "RUBYOPT", "RUBYLIB",
})
#: Tuning knobs inside reserved families that change no isolation and are widely used.
ALLOWED_DESPITE_PREFIX: frozenset[str] = frozenset({
    "PYTHONUNBUFFERED", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE",
    "CUDA_LAUNCH_BLOCKING", "CUDA_DEVICE_MAX_CONNECTIONS", "CUDA_MODULE_LOADING",
})


def reserved_rule(name: str) -> str | None:
    """The rule ``name`` falls under (``"LD_*"``, ``"PATH"``), or None when users may set it."""
    upper = name.upper()
    if upper in ALLOWED_DESPITE_PREFIX:
        return None
    if upper in RESERVED_NAMES:
        return upper
    for prefix in RESERVED_PREFIXES:
        if upper.startswith(prefix):
            return prefix + "*"
    return None


def reserved_rules() -> list[str]:
    """Every rule, for error details and documentation."""
    return [p + "*" for p in RESERVED_PREFIXES] + sorted(RESERVED_NAMES)


def check_variables(env: dict[str, str], secret_env: dict[str, str]) -> None:
    """Names well formed, not reserved, not in both maps; values bounded; at most
    ``MAX_VARIABLES`` in all. InvalidInput (422) names the variable and the rule."""
    both = sorted(set(env) & set(secret_env))
    if both:
        raise InvalidInput(
            f"variable {both[0]} is given both as a plain and as a secret variable", code="duplicate_variable",
            details={"field": "secret_env", "name": both[0]},
        )
    if len(env) + len(secret_env) > MAX_VARIABLES:
        raise InvalidInput(f"at most {MAX_VARIABLES} environment variables", details={"field": "env", "max": MAX_VARIABLES})
    for field, variables in (("env", env), ("secret_env", secret_env)):
        for name, value in variables.items():
            if not isinstance(name, str) or not VARIABLE_NAME_RE.fullmatch(name):
                raise InvalidInput(
                    f"{name!r} is not a valid variable name (letters, digits and '_', not starting with a digit)",
                    code="invalid_variable", details={"field": field, "name": str(name)},
                )
            rule = reserved_rule(name)
            if rule is not None:
                raise InvalidInput(
                    f"{name} is reserved by the platform ({rule}); pick another name",
                    code="reserved_variable",
                    details={"field": field, "name": name, "rule": rule, "reserved": reserved_rules()},
                )
            if not isinstance(value, str) or len(value) > MAX_VALUE_LENGTH or "\x00" in value:
                raise InvalidInput(
                    f"the value of {name} must be text of at most {MAX_VALUE_LENGTH} characters without NUL",
                    code="invalid_variable", details={"field": field, "name": name},
                )
