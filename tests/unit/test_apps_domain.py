"""The apps domain: never the console's host nor a parent of it; a warning for a
same-site apps domain over plain HTTP; the URLs app hosts get."""

from __future__ import annotations

import pytest

from remotegpu.entrypoints.config import ConfigError, load_settings
from remotegpu.entrypoints.http.apps import apps_config, same_site_warning


@pytest.mark.parametrize("public_url, domain", [
    ("https://gpu.example.com", "example.com"),  # a parent: the console would be an app host's sibling… and under it
    ("https://gpu.example.com", "gpu.example.com"),  # the console's own host
    ("http://localhost:8080", "localhost"),  # the embedded default needs the console on 127.0.0.1
    (None, ".."),
])
def test_an_apps_domain_that_covers_the_console_is_refused(public_url, domain, tmp_path):
    with pytest.raises(ConfigError, match="REMOTEGPU_APPS_DOMAIN"):
        load_settings(data_dir=tmp_path, public_url=public_url, apps_domain=domain)


def test_the_embedded_default_and_production_urls(tmp_path):
    embedded = apps_config(load_settings(data_dir=tmp_path, http_port=8123))
    assert embedded.console_origin == "http://127.0.0.1:8123" and not embedded.secure
    assert embedded.app_url("0b8f2a3c-1d2e-4f5a-8b9c-0d1e2f3a4b5c", "jupyter") == \
        "http://0b8f2a3c-1d2e-4f5a-8b9c-0d1e2f3a4b5c--jupyter.localhost:8123/"
    assert embedded.app_cookie == "rgpu_app" and same_site_warning(embedded) is None
    prod = apps_config(load_settings(data_dir=tmp_path, public_url="https://gpu.example.com", apps_domain="apps.example.com"))
    assert prod.app_url("0b8f2a3c-1d2e-4f5a-8b9c-0d1e2f3a4b5c", "jupyter") == \
        "https://0b8f2a3c-1d2e-4f5a-8b9c-0d1e2f3a4b5c--jupyter.apps.example.com/"
    assert prod.secure and prod.app_cookie == "__Host-rgpu_app" and same_site_warning(prod) is None
    assert prod.label_of("0b8f2a3c-1d2e-4f5a-8b9c-0d1e2f3a4b5c--jupyter.apps.example.com") == "0b8f2a3c-1d2e-4f5a-8b9c-0d1e2f3a4b5c--jupyter"
    assert prod.label_of("gpu.example.com") is None and prod.label_of("apps.example.com") is None


def test_a_same_site_apps_domain_over_plain_http_is_warned_about(tmp_path):
    plain = apps_config(load_settings(data_dir=tmp_path, public_url="http://gpu.example.com", apps_domain="apps.example.com"))
    assert "HTTPS" in same_site_warning(plain)
    apart = apps_config(load_settings(data_dir=tmp_path, public_url="http://gpu.example.com", apps_domain="example-apps.net"))
    assert same_site_warning(apart) is None
