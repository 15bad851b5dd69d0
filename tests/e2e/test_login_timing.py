"""Logins take equal work for known and unknown usernames (no enumeration by timing).

A statistical comparison, never one timed call: rounds of one failed login of each
kind in random order, compared in pairs within a round (load on a shared machine
changes slowly, so it hits both of a pair alike) and summarised by the median over
many rounds. The yardstick is what the leak would be: one password verification.
Without the dummy verification an unknown name skips it, and the pairs differ by about
that much; with it they differ by noise only.

The hash is argon2id at test cost (~10 ms here: cheaper than production, dearer than
the "fast" profile, whose 0.5 ms drowns in this machine's scheduling noise).
"""

from __future__ import annotations

import random
import statistics
import time

from remotegpu.adapters.security.passwords import Argon2PasswordHasher
from remotegpu.domain.shared.errors import Unauthenticated
from remotegpu.entrypoints.containers import build_container
from tests.conftest import make_settings

ROUNDS = 60
PASSWORD = "correct horse battery"


async def test_failed_logins_of_known_unknown_and_disabled_accounts_take_the_same_time(tmp_path):
    settings = make_settings(
        tmp_path, login_limit_per_ip=10**6, login_limit_per_account=10**6, login_limit_per_account_all_ips=10**6
    )
    container = build_container(settings, persistence="memory")
    container.hasher.override(Argon2PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
    auth, hasher = container.auth_service(), container.hasher()
    await auth.register("known", "known@example.com", PASSWORD)
    disabled = await auth.register("gone", "gone@example.com", PASSWORD)
    admin = await container.admin_service().create_admin("root", "root@example.com", PASSWORD)
    await container.admin_service().update_user(admin, disabled.id, is_active=False)
    real_hash = await hasher.hash(PASSWORD)

    async def failed_login(name: str, password: str) -> float:
        start = time.perf_counter()
        try:
            await auth.login(name, password, ip="192.0.2.1")
        except Unauthenticated:
            return time.perf_counter() - start
        raise AssertionError("the login should have failed")

    async def verification() -> float:
        start = time.perf_counter()
        await hasher.verify(real_hash, "wrong password")
        return time.perf_counter() - start

    kinds = {
        "known, wrong password": lambda: failed_login("known", "wrong password"),
        "known by email, wrong password": lambda: failed_login("known@example.com", "wrong password"),
        "unknown name": lambda: failed_login("nobody", "wrong password"),
        "unknown email": lambda: failed_login("nobody@example.com", "wrong password"),
        "disabled, right password": lambda: failed_login("gone", PASSWORD),
        "one verification": verification,
    }
    for measure in kinds.values():  # warm up: first calls start the pool's threads, make the dummy hash
        await measure()
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(ROUNDS):
        for kind in random.sample(list(kinds), len(kinds)):
            samples[kind].append(await kinds[kind]())

    verify = statistics.median(samples.pop("one verification"))
    reference = samples["known, wrong password"]

    def paired(kind: str) -> float:
        """Median over rounds of (this kind − a known user's failed login)."""
        return statistics.median(a - b for a, b in zip(samples[kind], reference))

    report = ", ".join(
        f"{kind}: median {statistics.median(values) * 1000:.2f} ms, paired {paired(kind) * 1000:+.2f} ms"
        for kind, values in samples.items()
    ) + f"; one verification: {verify * 1000:.2f} ms"
    print(report)
    for kind in samples:
        # Each kind does the work of a known user's failed login, give or take well under one verification.
        assert abs(paired(kind)) < 0.5 * verify, report
    # And that work includes a verification (the yardstick is real).
    assert statistics.median(reference) > 0.5 * verify, report
