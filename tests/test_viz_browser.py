"""The viz page as a person uses it: headless Chromium clicks down to one head's attention map.

Uses Debian's /usr/bin/chromium through Playwright (never a downloaded browser); every network
request is blocked and recorded, so the page is proven to work offline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from nanogpt.model import GPT, GPTConfig
from nanogpt.summary import summarize
from nanogpt.viz import page_data, render_html

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
PROMPT = 'To be, or not <img src=x onerror="window.pwned=1"> to be'


class ByteTokenizer:
    name, vocab_size, eot_id = "bytes", 256, None

    def encode(self, text):
        return list(text.encode())

    def decode_bytes(self, ids):
        return bytes(ids)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                              args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A page for a tiny model with a prompt and a training run; and one for a bare preset."""
    d = tmp_path_factory.mktemp("site")
    torch.manual_seed(0)
    cfg = GPTConfig(block_size=64, vocab_size=256, n_layer=3, n_head=4, n_embd=32)
    model = GPT(cfg).eval()
    run = d / "run"
    run.mkdir()
    with open(run / "metrics.jsonl", "w") as f:
        for s in range(101):
            f.write(json.dumps({"kind": "train", "step": s, "tokens": 512 * s, "loss": 5 - s / 40}) + "\n")
            if s % 25 == 0:
                f.write(json.dumps({"kind": "eval", "step": s, "tokens": 512 * s,
                                    "train_loss": 5 - s / 40, "val_loss": 5.1 - s / 50}) + "\n")
    full = d / "full.html"
    full.write_text(render_html(page_data(cfg, source="tiny <test> model", model=model, tokenizer=ByteTokenizer(),
                                          prompt=PROMPT, metrics_dir=str(run))))
    bare = d / "bare.html"
    bare.write_text(render_html(page_data(GPTConfig.from_preset("gpt2"), source="preset gpt2")))
    return {"full": full, "bare": bare, "cfg": cfg, "T": len(PROMPT.encode())}


@pytest.fixture
def page(browser):
    pg = browser.new_page(viewport={"width": 1320, "height": 900})
    pg.errors, pg.requests = [], []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)

    def block(route):
        if not route.request.url.startswith("file://"):
            pg.requests.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    pg.route("**/*", block)
    yield pg
    assert pg.errors == [], pg.errors
    assert pg.requests == [], f"the page tried the network: {pg.requests}"
    pg.close()


def open_page(page, path: Path):
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=10_000)


def tid(page, name):
    return page.locator(f"[data-testid='{name}']")


def test_click_down_to_one_heads_attention(page, site, tmp_path):
    open_page(page, site["full"])
    s = summarize(site["cfg"])
    per_block = sum(r.params for r in s.block_rows)
    tid(page, "stack").locator("[data-testid='box-block-1']").click()
    assert tid(page, "detail-title").inner_text() == "Block 1"
    assert int(tid(page, "detail-params").get_attribute("data-params")) == per_block
    assert "Attention is communication" in tid(page, "detail-explain").inner_text()
    flow = tid(page, "flow")
    for part in ("ln_1", "attn", "res1", "ln_2", "mlp", "res2"):
        assert flow.locator(f"[data-testid='box-block-1-{part}']").count() == 1, part

    flow.locator("[data-testid='box-block-1-attn']").click()
    assert tid(page, "detail-title").inner_text() == "causal self-attention"
    assert tid(page, "breadcrumbs").inner_text().split()[:3] == ["GPT", "\u203a", "Block"]
    flow = tid(page, "flow")
    for part in ("qkv", "split", "heads", "scores", "mask", "softmax", "weighted", "merge", "attn-proj"):
        assert flow.locator(f"[data-testid='box-block-1-{part}']").is_visible(), part
    assert "[B, 4, T, 8]" in flow.locator("[data-testid='box-block-1-split']").inner_text()
    assert "[B, 4, T, T]" in flow.locator("[data-testid='box-block-1-scores']").inner_text()
    qkv = flow.locator("[data-testid='box-block-1-qkv']")
    assert f"{32 * 96 + 96:,} params" in qkv.inner_text()
    page.screenshot(path=str(tmp_path / "attention.png"))

    tid(page, "headchip-1-2").click()
    assert tid(page, "detail-title").inner_text() == "head 2"
    heat = tid(page, "heatmap")
    assert heat.get_attribute("data-layer") == "1" and heat.get_attribute("data-head") == "2"
    T = site["T"]
    assert heat.locator("rect.cell").count() == T * (T + 1) // 2  # the visible (causal) triangle
    cell = heat.locator("rect.cell[data-i='5'][data-j='2']")
    cell.hover()
    tip = tid(page, "tooltip")
    assert tip.is_visible() and "weight" in tip.inner_text() and '" "' in tip.inner_text()  # token 2 is ' '
    assert float(cell.get_attribute("data-p")) > 0
    assert "last token puts" in tid(page, "head-reading").inner_text()
    tid(page, "next-head").click()
    assert tid(page, "heatmap").get_attribute("data-head") == "3"
    page.screenshot(path=str(tmp_path / "head.png"), full_page=True)
    assert (tmp_path / "head.png").stat().st_size > 20_000


def test_numbers_on_boxes_match_summary(page, site):
    open_page(page, site["full"])
    s = summarize(site["cfg"])
    rows = {r.name: r.params for r in s.rows}
    stack = tid(page, "stack")
    for box, n in (("wte", rows["wte"]), ("wpe", rows["wpe"]), ("ln_f", rows["ln_f"]), ("lm_head", 0)):
        assert int(stack.locator(f"[data-testid='box-{box}']").get_attribute("data-params")) == n
    per_block = sum(r.params for r in s.block_rows)
    for i in range(3):
        assert tid(page, f"params-block-{i}").first.inner_text() == f"{per_block:,} params"
    assert "+0" in tid(page, "params-lm_head").first.inner_text()
    assert f"{s.total_params:,} parameters" in tid(page, "detail-params").inner_text()  # the GPT panel


def test_overview_predictions_and_loss_chart(page, site):
    open_page(page, site["full"])
    T = site["T"]
    assert tid(page, "attention-grid").locator("button.headchip").count() == 3 * 4
    tid(page, "thumb-2-1").click()
    assert tid(page, "heatmap").get_attribute("data-layer") == "2"
    assert tid(page, "pred-table").locator("tr[data-testid^='pred-row-']").count() == T
    assert tid(page, "pred-row-0").locator(".cand").count() == 5
    # The prompt's markup is shown as text, never parsed: no <img> exists and its handler never ran.
    assert page.locator("img").count() == 0 and page.evaluate("window.pwned") is None
    shown = "".join(tid(page, "pred-table").locator("tr td:nth-child(2)").all_inner_texts())
    assert shown == PROMPT.replace(" ", "\u2423")  # every token, spaces made visible
    assert tid(page, "model-title").inner_text() == "tiny <test> model"
    chart = tid(page, "loss-svg")
    assert chart.get_attribute("data-x") == "steps"
    assert tid(page, "series-val").count() == 1 and tid(page, "series-train").count() == 1
    tid(page, "xaxis-tokens").click()
    assert tid(page, "loss-svg").get_attribute("data-x") == "tokens"
    tid(page, "loss-svg").hover()
    assert "val" in tid(page, "tooltip").inner_text()


def test_architecture_only_page(page, site, tmp_path):
    open_page(page, site["bare"])
    assert not tid(page, "section-attention").is_visible()
    assert not tid(page, "section-training").is_visible()
    assert int(tid(page, "detail-params").get_attribute("data-params")) == 124_439_808
    tid(page, "stack").locator("[data-testid='box-block-11']").click()
    tid(page, "box-block-11-attn").click()
    tid(page, "box-block-11-heads").click()
    tid(page, "box-block-11-head-0").click()
    assert "No prompt was given" in tid(page, "detail").inner_text()
    tid(page, "crumb-block-11").click()
    assert tid(page, "detail-title").inner_text() == "Block 11"
    tid(page, "box-block-11-mlp").click()
    assert "[B, T, 768] -> [B, T, 3072]" in tid(page, "box-block-11-fc").inner_text()
    page.screenshot(path=str(tmp_path / "bare.png"))
