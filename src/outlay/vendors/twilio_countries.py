"""The destination country of an E.164 number, from its country calling code (ITU-T E.164).

Calling codes are prefix-free, so the longest known prefix decides. +1 (the North American
Numbering Plan) and +7 are shared; their area codes tell Canada, the Caribbean and the US
territories from the US, and Kazakhstan from Russia, because SMS prices differ between them.
"""

from __future__ import annotations

import re
from functools import cache

from outlay.policy.errors import invalid_request

_CALLING_CODES = """
1 US  7 RU  76 KZ  77 KZ  20 EG  27 ZA  30 GR  31 NL  32 BE  33 FR  34 ES  36 HU  39 IT  40 RO
41 CH  43 AT  44 GB  45 DK  46 SE  47 NO  48 PL  49 DE  51 PE  52 MX  53 CU  54 AR  55 BR  56 CL
57 CO  58 VE  60 MY  61 AU  62 ID  63 PH  64 NZ  65 SG  66 TH  81 JP  82 KR  84 VN  86 CN  90 TR
91 IN  92 PK  93 AF  94 LK  95 MM  98 IR
211 SS  212 MA  213 DZ  216 TN  218 LY  220 GM  221 SN  222 MR  223 ML  224 GN  225 CI  226 BF
227 NE  228 TG  229 BJ  230 MU  231 LR  232 SL  233 GH  234 NG  235 TD  236 CF  237 CM  238 CV
239 ST  240 GQ  241 GA  242 CG  243 CD  244 AO  245 GW  248 SC  249 SD  250 RW  251 ET  252 SO
253 DJ  254 KE  255 TZ  256 UG  257 BI  258 MZ  260 ZM  261 MG  262 RE  263 ZW  264 NA  265 MW
266 LS  267 BW  268 SZ  269 KM  290 SH  291 ER  297 AW  298 FO  299 GL
350 GI  351 PT  352 LU  353 IE  354 IS  355 AL  356 MT  357 CY  358 FI  359 BG  370 LT  371 LV
372 EE  373 MD  374 AM  375 BY  376 AD  377 MC  378 SM  380 UA  381 RS  382 ME  383 XK  385 HR
386 SI  387 BA  389 MK  420 CZ  421 SK  423 LI
500 FK  501 BZ  502 GT  503 SV  504 HN  505 NI  506 CR  507 PA  508 PM  509 HT  590 GP  591 BO
592 GY  593 EC  594 GF  595 PY  596 MQ  597 SR  598 UY  599 CW
670 TL  672 NF  673 BN  674 NR  675 PG  676 TO  677 SB  678 VU  679 FJ  680 PW  681 WF  682 CK
683 NU  685 WS  686 KI  687 NC  688 TV  689 PF  690 TK  691 FM  692 MH
850 KP  852 HK  853 MO  855 KH  856 LA  880 BD  886 TW
960 MV  961 LB  962 JO  963 SY  964 IQ  965 KW  966 SA  967 YE  968 OM  970 PS  971 AE  972 IL
973 BH  974 QA  975 BT  976 MN  977 NP  992 TJ  993 TM  994 AZ  995 GE  996 KG  998 UZ
"""

# NANP area codes outside the US proper, as +1 prefixes.
_NANP = """
CA 204 226 236 249 250 257 263 289 306 343 354 365 367 368 382 387 403 416 418 428 431 437 438
CA 450 460 468 474 506 514 519 548 579 581 584 587 600 604 613 639 647 672 683 705 709 742 753
CA 778 780 782 807 819 825 867 873 879 902 905 942
BS 242  BB 246  AI 264  AG 268  VG 284  VI 340  KY 345  BM 441  GD 473  TC 649  JM 658 876
MS 664  MP 670  GU 671  AS 684  SX 721  LC 758  DM 767  VC 784  PR 787 939  DO 809 829 849
TT 868  KN 869
"""


@cache
def _by_prefix() -> dict[str, str]:
    table: dict[str, str] = {}
    words = _CALLING_CODES.split()
    for code, country in zip(words[::2], words[1::2], strict=True):
        table[code] = country
    country = ""
    for word in _NANP.split():
        if word.isalpha():
            country = word
        else:
            table["1" + word] = country
    return table


def country_of(digits: str) -> str | None:
    """ISO 3166 alpha-2 country of an E.164 number given as digits after `+`; None if unknown."""
    table = _by_prefix()
    # Country codes have at most 3 digits; NANP area-code entries are 4 (1 + area code).
    for length in range(min(4, len(digits)), 0, -1):
        found = table.get(digits[:length])
        if found is not None:
            return found
    return None


_PHONE = re.compile(r"(\+?)([0-9]{2,15})")
# Characters people and SDKs put inside phone numbers that carry no digits.
_SEPARATORS = re.compile(r"[\s().-]")


def destination(to: object) -> tuple[str, str | None]:
    """The channel ("sms", "whatsapp", ...) and ISO country of `To`; country None if unknown."""
    if not isinstance(to, str) or not to.strip():
        raise invalid_request("`To` is required: the destination number in E.164 form.", "To")
    channel, address = "sms", to.strip()
    if ":" in address:  # whatsapp:+447700900123 and other channel addresses
        prefix, address = address.split(":", 1)
        channel = prefix.strip().lower()
    phone = _PHONE.fullmatch(_SEPARATORS.sub("", address))
    if phone is None:
        if channel != "sms":
            return channel, None  # a channel address that is not a number: price as unknown
        raise invalid_request(
            f"`To` must be a phone number in E.164 form such as +447700900123, got {to!r}.", "To"
        )
    plus, digits = phone.groups()
    # Without a leading + the number is national and its country cannot be known.
    return channel, country_of(digits) if plus else None
