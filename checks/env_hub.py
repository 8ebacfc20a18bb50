"""env.hub: Hugging Face token present (never shown), offline mode, model caches writable."""
from __future__ import annotations

from cvdoctor.finding import passed, warned
from cvdoctor.registry import register

TITLE = "Model hub caches"
CACHES = (("hf_hub_cache", "Hugging Face cache", "HF_HOME=/writable/dir/huggingface"),
          ("torch_hub_checkpoints", "torch.hub cache", "TORCH_HOME=/writable/dir/torch"))


def token_text(token: dict) -> str:
    if not token.get("present"):
        return "no Hugging Face token (public models only)"
    return f"Hugging Face token set ({token.get('length')} characters, from {token.get('source')})"


@register("env.hub", order=90, title=TITLE,
          recipes=["hub-cache-unwritable", "hub-offline-no-cache"],
          needs=["hub"])
def check(ctx):
    """Hugging Face token present (its value is never read), offline mode, and whether the
    Hugging Face and torch.hub caches can be written. Never touches the network.

    Warns (hub-cache-unwritable) when a cache cannot be written (downloads into it will fail),
    and (hub-offline-no-cache) in offline mode with empty caches (every pretrained load will
    fail)."""
    h = ctx.fact("hub")
    evidence = {"token": h.get("token"), "offline": h.get("offline"),
                "offline_variables": h.get("offline_variables"),
                **{key: h.get(key) for key, _, _ in CACHES}}
    findings = []
    for key, label, variable in CACHES:
        cache = h.get(key) or {}
        if not cache.get("writable"):
            legit = (" (fine for a read-only, pre-filled cache used offline)"
                     if h.get("offline") and cache.get("entries") else "")
            findings.append(warned(
                TITLE, f"{label} {cache.get('path')} cannot be written: {cache.get('problem')}; "
                f"downloads into it will fail{legit}",
                f"export {variable} (a directory you can write), or fix its owner",
                "hub-cache-unwritable", **evidence))
    if h.get("offline"):
        hf, th = h.get("hf_hub_cache") or {}, h.get("torch_hub_checkpoints") or {}
        if not hf.get("entries") and not th.get("entries"):
            names = ", ".join(f"{k}={v}" for k, v in (h.get("offline_variables") or {}).items())
            findings.append(warned(
                TITLE, f"offline mode ({names}) with empty caches: {hf.get('path')} holds "
                f"{hf.get('entries', 0)} models, {th.get('path')} {th.get('entries', 0)} "
                "checkpoints; every pretrained load will fail",
                "download once online (unset HF_HUB_OFFLINE), or point HF_HOME/TORCH_HOME at a "
                "filled cache", "hub-offline-no-cache", **evidence))
    if findings:
        return findings
    hf, th = h.get("hf_hub_cache") or {}, h.get("torch_hub_checkpoints") or {}
    mode = "offline" if h.get("offline") else "online allowed (cvdoctor itself never connects)"
    return passed(TITLE, f"{token_text(h.get('token') or {})}; {mode}; caches writable: "
                  f"{hf.get('path')} ({hf.get('entries', 0)} models), {th.get('path')} "
                  f"({th.get('entries', 0)} checkpoints)", **evidence)
