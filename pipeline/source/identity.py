"""Identity: `user.email` checked as an address, normalised, memoised.

Invalid addresses are dropped and counted (`Identity.invalid`, the metric
`ofsys_invalid_emails_total`); an address is never logged.
"""

from __future__ import annotations

import hashlib
import unicodedata

# RFC 5322 atext, lower-case (addresses are lower-cased first), and the dot; then the
# ASCII characters of a domain. Non-ASCII letters, marks and digits (internationalised
# addresses and domains, e.g. пример.рф) are allowed in both.
_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.!#$%&'*+-/=?^_`{|}~")
_DOMAIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-")
_WORD_CATEGORIES = frozenset(("Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd"))
_MAX_RAW_EMAIL = 1024  # longer raw values are invalid and never memoised


def _word_char(char: str) -> bool:
    """A non-ASCII letter, combining mark or decimal digit."""
    return char > "\x7f" and unicodedata.category(char) in _WORD_CATEGORIES


def is_email(address: str) -> bool:
    """Whether a trimmed, lower-cased `address` is an e-mail address: at most 254
    characters; a local part of 1..64 RFC 5322 atext characters (or non-ASCII letters,
    marks and digits, RFC 6531), dots neither leading, trailing nor doubled; a domain of
    at least two labels of 1..63 letters (any script), marks, digits and inner hyphens,
    the last not all digits. Quoted local parts and address literals are not accepted."""
    if len(address) > 254:
        return False
    local, _, domain = address.rpartition("@")
    if not local or len(local) > 64 or local[0] == "." or local[-1] == "." or ".." in local:
        return False
    if not _LOCAL_CHARS.issuperset(local):  # the ASCII fast path failed: look closer
        for char in local:
            if char not in _LOCAL_CHARS and not _word_char(char):
                return False
    if not _DOMAIN_CHARS.issuperset(domain):
        for char in domain:
            if char not in _DOMAIN_CHARS and not _word_char(char):
                return False
    labels = domain.split(".")
    if len(labels) < 2 or labels[-1].isdigit():
        return False
    for label in labels:
        if not 0 < len(label) <= 63 or label[0] == "-" or label[-1] == "-":
            return False
    return True


def email_hash(email: str) -> str:
    """SHA-256 (hex) of a normalised address: how a forget request names a shopper, and
    how the erasure is logged, so the address itself is neither sent nor logged."""
    return hashlib.sha256(email.encode()).hexdigest()


class Identity:
    """Normalises user.email (trimmed, lower-cased, checked with `is_email`) and counts
    addresses that are present but not e-mails (they are not sent). A visitor's address
    repeats on every event, so results are memoised in a bounded table."""

    __slots__ = ("_known", "invalid")
    MEMO_SIZE = 65_536

    def __init__(self) -> None:
        self.invalid = 0
        self._known: dict[str, str] = {}  # raw -> normalised, "" when not an e-mail

    def email(self, raw: str | None) -> str | None:
        """The normalised address of a raw `user.email`, or None (absent or invalid)."""
        if not raw:
            return None
        email = self._known.get(raw)
        if email is None:
            if len(raw) > _MAX_RAW_EMAIL:  # not memoised: huge keys must not pile up
                self.invalid += 1
                return None
            email = raw.strip().lower()
            if not is_email(email):
                email = ""
            elif email == raw:
                email = raw  # one string object for both, not two: the table is large
            if len(self._known) >= self.MEMO_SIZE:
                self._known.clear()
            self._known[raw] = email
        if email:
            return email
        self.invalid += 1
        return None
