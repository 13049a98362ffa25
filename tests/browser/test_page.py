"""The web page at `/` through a real browser: a key typed in and kept, fill-mask and question answering run
through the form with their results as tables, the key's jobs listed, and nothing fetched from elsewhere."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.integration.stack import Stack

pytestmark = pytest.mark.stack(start=("api", "worker"))


def test_a_user_runs_fill_mask_and_question_answering_and_sees_the_jobs(stack: Stack, browser: Any) -> None:
    key = stack.new_key("browser")
    context = browser.new_context()
    page = context.new_page()
    elsewhere: list[str] = []
    page.on("request", lambda request: None if request.url.startswith(stack.url) else elsewhere.append(request.url))
    page.goto(stack.url + "/")

    page.get_by_label("API key").fill(key)
    page.get_by_label("API key").press("Tab")  # `change`: the key is kept in the browser's storage
    page.get_by_label("Task").select_option("fill-mask")
    page.get_by_label("Text", exact=True).fill("Paris is the [MASK] of France.")
    page.get_by_label("Top k").fill("3")
    page.get_by_role("button", name="Run").click()
    fill_mask = page.locator("#results table")
    expect(fill_mask).to_have_count(1, timeout=30_000)
    expect(fill_mask.locator("thead th")).to_have_text(["token", "score", "sequence"])
    expect(fill_mask.locator("tbody tr")).to_have_count(3)
    expect(fill_mask.locator("tbody tr").first.locator(".bar")).to_have_count(1)
    first_sequence = fill_mask.locator("tbody tr").first.locator("td").nth(2).inner_text()
    token = fill_mask.locator("tbody tr").first.locator("td").first.inner_text()
    assert first_sequence.startswith("Paris is the") and token.replace("##", "") in first_sequence

    page.get_by_label("Task").select_option("question-answering")
    expect(page.get_by_label("Text", exact=True)).to_be_hidden()
    page.get_by_label("Question").fill("Where do I live?")
    page.get_by_label("Context").fill("My name is Wolfgang and I live in Berlin.")
    page.get_by_label("Top k").fill("1")
    page.get_by_role("button", name="Run").focus()
    page.keyboard.press("Enter")  # keyboard use: the form submits from the button
    answers = page.locator("#results table")
    expect(answers.locator("thead th")).to_have_text(["answer", "score", "start", "end"], timeout=30_000)
    expect(answers.locator("tbody tr")).to_have_count(1)
    start, end = (int(answers.locator("tbody td").nth(i).inner_text()) for i in (2, 3))
    context_text = "My name is Wolfgang and I live in Berlin."
    assert answers.locator("tbody td").first.inner_text() == context_text[start:end]

    jobs = page.locator("#jobs tbody tr")
    expect(jobs).to_have_count(2, timeout=10_000)
    expect(jobs.first.locator("td").nth(1)).to_have_text("question-answering")
    expect(jobs.nth(1).locator("td").nth(2)).to_have_text("succeeded")
    expect(page.locator("#now-stats")).to_contain_text("finished")

    page.reload()
    expect(page.get_by_label("API key")).to_have_value(key)  # kept in the browser's storage
    assert elsewhere == []
    context.close()


def test_a_wrong_key_says_so_on_the_page(stack: Stack, browser: Any) -> None:
    page = browser.new_page()
    page.goto(stack.url + "/")
    page.get_by_label("API key").fill("dq_not-a-key")
    page.get_by_role("button", name="Run").click()
    expect(page.locator("#status")).to_contain_text("401", timeout=10_000)
    page.close()
