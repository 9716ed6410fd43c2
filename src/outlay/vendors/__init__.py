"""Pure pricing of vendor API calls (Stripe, Twilio, Resend, configured vendors). No I/O.

The gateway builds one VendorPricing per vendor with `pricing_for(name, config_section)`; per
call it reserves `estimate(call).cost_micros` (once per `idempotency_key`), forwards
`estimate.body`, and settles to `actual(...)`, or to the estimate when that is None.
"""

from outlay.vendors.base import VendorCall, VendorEstimate, VendorPricing
from outlay.vendors.pricing import BUILTIN_VENDORS, pricing_for
from outlay.vendors.twilio_segments import Segments, sms_segments

__all__ = [
    "BUILTIN_VENDORS",
    "Segments",
    "VendorCall",
    "VendorEstimate",
    "VendorPricing",
    "pricing_for",
    "sms_segments",
]
