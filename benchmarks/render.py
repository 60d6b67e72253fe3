"""Micro-benchmark of email personalisation (issue 3's per-contact path).

Renders N messages of the ~300-line sample newsletter (templating/samples/newsletter.mjml,
20 tracked links) and prints µs per message for: the Jinja render of the HTML alone, the
full ``EmailTemplate.render`` (HTML + text + subject + tracked links + MIME bytes), and the
same with DKIM signing; plus messages per second on one core.

    .venv/bin/python benchmarks/render.py [--n 20000] [--dkim]
"""

from __future__ import annotations

import sys
from pathlib import Path as _Path

# Run as a script, this folder comes first on sys.path, and benchmarks/tracking.py would
# shadow the `tracking` package: put the repository root there instead.
_ROOT = _Path(__file__).resolve().parents[1]
sys.path[:] = [str(_ROOT)] + [p for p in sys.path
                              if _Path(p or ".").resolve() != _ROOT / "benchmarks"]

import argparse
import gc
import tempfile
import time
from pathlib import Path

from reach.settings import Settings
from templating.email import EmailTemplate

SAMPLE = Path(__file__).resolve().parent.parent / "templating" / "samples" / "newsletter.mjml"
COUNTRIES = ["FR", "DE", "US", "GB", "ES"]
LOCALES = ["fr_FR", "de_DE", "en_US", "en_GB", "es_ES"]


def contacts(n: int) -> list[dict[str, object]]:
    """Varied contacts so that no branch or filter is cached away."""
    return [
        {"id": i, "email": f"user{i}@example.test", "first_name": f"User{i}",
         "last_name": "Example", "country": COUNTRIES[i % 5], "locale": LOCALES[i % 5],
         "timezone": "Europe/Paris", "points": i * 7, "currency": "EUR"}
        for i in range(n)
    ]


def timed(label: str, n: int, fn) -> float:  # noqa: ANN001 - a bench helper
    gc.collect()
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    per = elapsed / n * 1e6
    print(f"{label:<44} {per:9.1f} µs/message {n / elapsed:10.0f} msg/s")
    return per


def dkim_key(folder: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = folder / "dkim.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dkim", action="store_true", help="also time DKIM-signed renders")
    args = parser.parse_args()
    n = args.n
    work = Path(tempfile.mkdtemp(prefix="reach-bench-"))
    settings = Settings(project_dir=work, secret_key="bench-secret-0123456789abcdef",
                        tracking_base_url="https://t.acme.test")
    options = dict(name="newsletter", subject="{{ contact.first_name }}, spring is here",
                   from_addr="Acme <news@acme.test>", preheader="New this week at Acme",
                   settings=settings, cache_dir=work / "mjml")
    start = time.perf_counter()
    template = EmailTemplate.load(SAMPLE, **options)
    print(f"load (MJML compile, link rewriting, text part, MIME skeleton): "
          f"{(time.perf_counter() - start) * 1e3:.1f} ms; "
          f"{len(template.links.static)} static + {template.links.dynamic} personalised links")
    people = contacts(n)
    context = {"campaign": "spring", "journey": None, "step": None}
    sample = template.render(people[0], message_id=1, context=context)
    print(f"message size: {len(sample.raw) / 1024:.1f} KB (HTML {len(sample.html) / 1024:.1f} KB)")

    html_template = template._html.template  # the compiled per-contact HTML template
    contexts = [template._context(c, i, context, pixel=True) for i, c in enumerate(people)]

    def jinja_only() -> None:
        render = html_template.render
        for ctx in contexts:
            render(ctx)

    def full() -> None:
        render = template.render
        for i, contact in enumerate(people):
            render(contact, message_id=i, context=context)

    timed("Jinja render of the HTML only", n, jinja_only)
    timed("full render() → MIME bytes", n, full)
    if args.dkim:
        signed = EmailTemplate.load(SAMPLE, dkim_selector="bench",
                                    dkim_private_key_path=dkim_key(work), **options)
        m = max(1, n // 10)
        timed(f"full render() + DKIM (n={m})", m,
              lambda: [signed.render(c, message_id=i, context=context)
                       for i, c in enumerate(people[:m])])


if __name__ == "__main__":
    main()
