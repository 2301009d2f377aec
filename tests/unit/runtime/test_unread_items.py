"""A page view's cart items are read only when its cart needs them (site_reader.py): a
body whose items turn out undecodable then is still dead-lettered, with its reason,
and the window commits past it."""

from __future__ import annotations

from collections.abc import Callable

from pipeline.source.schemas import load_family

from .conftest import TOPIC, Rig, fill

T0 = 1_764_000_000_000


def _page(event_id: str, name: str) -> dict[str, object]:
    return {
        "id": event_id,
        "name": "Viewed Page",
        "timestamp": T0,
        "cart": {
            "id": "c-1",
            "total": 10.0,
            "checkoutStep": 1,
            "lineItems": [
                {
                    "product": {"id": "sku-1", "name": name, "unitSalePrice": 10.0},
                    "quantity": 1,
                    "subtotal": 10.0,
                }
            ],
        },
    }


def test_a_page_view_with_undecodable_items_is_dead_lettered(rig: Callable[..., Rig]) -> None:
    family = load_family("site_event")
    good = family.encode_single_object(_page("e-1", "Kettle"))
    bad = family.encode_single_object(_page("e-2", "Ke\x00tle")).replace(b"Ke\x00tle", b"Ke\xfftle")
    pipeline = rig()
    fill(pipeline, [("c-1", bad), ("c-1", good)])
    pipeline.window()
    pipeline.window()
    [letter] = pipeline.fakes.outputs.topic(f"{TOPIC}.dlq")
    assert letter.value == bad
    assert dict(letter.headers or [])["ofsys.reason"] == b"undecodable"
    assert pipeline.committed() == {0: 2}
    calls = [c["call"] for c in pipeline.fakes.journey.accepted]
    assert calls == ["ECommerce.AddCart", "ECommerce.AddCartItem", "ECommerce.SubmitCart"]
