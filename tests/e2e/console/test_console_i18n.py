"""Switching the language: zh-CN ↔ English, remembered across reloads."""

from __future__ import annotations

from playwright.sync_api import expect


def test_switch_to_english_and_back(make_page, ui):
    page = make_page(locale="zh-CN")  # a Chinese browser starts in Chinese
    name = ui.user("lang")
    page.goto("/login")
    expect(page.get_by_test_id("login-submit")).to_have_text("登录")
    ui.login(page, name)
    nav = page.get_by_test_id("nav-environments")
    expect(nav).to_have_text("我的实例")
    ui.shot(page, "environments-zh")

    page.get_by_test_id("lang-switch").click()
    page.get_by_test_id("lang-en").click()
    expect(nav).to_have_text("Environments")
    expect(page.get_by_test_id("nav-account")).to_have_text("Account")
    assert page.evaluate("localStorage.getItem('rgpu.locale')") == "en"
    page.reload()
    expect(page.get_by_test_id("nav-environments")).to_have_text("Environments")
    ui.shot(page, "environments-en")

    page.get_by_test_id("lang-switch").click()
    page.get_by_test_id("lang-zh-CN").click()
    expect(page.get_by_test_id("nav-environments")).to_have_text("我的实例")
    page.reload()
    expect(page.get_by_test_id("nav-environments")).to_have_text("我的实例")
    expect(page.get_by_test_id("nav-account")).to_have_text("账号设置")


def test_errors_are_translated(make_page, ui):
    page = make_page(locale="zh-CN")
    page.goto("/login")
    page.get_by_test_id("login-username").fill("nobody-here")
    page.get_by_test_id("login-password").fill("wrong password!")
    page.get_by_test_id("login-submit").click()
    expect(page.locator(".el-message--error")).to_contain_text("用户名或密码错误")
