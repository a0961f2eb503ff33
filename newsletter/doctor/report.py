"""What `newsletter doctor` found: one `Check` per item, ✓ / ⚠ / ✗ with the fix in one line,
as text for a person or JSON for a script."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

OK, WARN, FAIL = "ok", "warn", "fail"
SYMBOLS = {OK: "✓", WARN: "⚠", FAIL: "✗"}


@dataclass(frozen=True)
class Check:
    area: str  # "dns", "ses", "web"
    name: str  # "SPF", "DKIM", ...
    status: str  # OK, WARN or FAIL
    detail: str  # what was found, one line
    fix: str = ""  # what to do about it, one line; empty when nothing is to be done

    def line(self) -> str:
        text = f"{SYMBOLS[self.status]} {self.name}: {self.detail}"
        return f"{text}\n    fix: {self.fix}" if self.fix and self.status != OK else text


@dataclass(frozen=True)
class Report:
    domain: str
    checks: tuple[Check, ...]

    @property
    def failed(self) -> bool:
        return any(check.status == FAIL for check in self.checks)

    @property
    def exit_code(self) -> int:
        """1 when any check failed (✗), else 0: warnings are worth reading, not fatal."""
        return 1 if self.failed else 0

    def text(self) -> str:
        lines = [f"newsletter doctor for {self.domain}"]
        area = None
        for check in self.checks:
            if check.area != area:
                area = check.area
                lines.append(f"\n{area.upper()}")
            lines.append(check.line())
        counts = {status: sum(1 for c in self.checks if c.status == status) for status in SYMBOLS}
        lines.append(f"\n{counts[OK]} ✓, {counts[WARN]} ⚠, {counts[FAIL]} ✗")
        return "\n".join(lines)

    def json(self) -> str:
        return json.dumps(
            {"domain": self.domain, "ok": not self.failed, "checks": [asdict(check) for check in self.checks]},
            ensure_ascii=False,
            indent=2,
        )
