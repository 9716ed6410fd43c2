/**
 * One error that is an SDK's own status error and Outlay's typed error at once: what an
 * intercepted client throws, so that `catch` code written for either keeps working.
 */

import { JOINED_CLASS, OutlayError } from "./errors.js";

// one prototype per (SDK error class, Outlay class), so that errors of one kind share a shape
const PROTOTYPES = new WeakMap<object, Map<typeof OutlayError, object>>();

/**
 * `error` (the SDK's, just made) turned into `typed` too: still the SDK's class for
 * `instanceof` and with its fields, plus Outlay's fields and getters (`spentUsd`, `retryAfter`,
 * …), and an instance of Outlay's class through `OutlayError[Symbol.hasInstance]`. Outlay's
 * fields (`name`, `message`, `status`, `code`, `details`, `requestId`) win where names meet;
 * the stack stays the SDK's.
 */
export function joinInto<E extends object>(error: E, typed: OutlayError): E & OutlayError {
  const cls = typed.constructor as typeof OutlayError;
  Object.setPrototypeOf(error, prototypeFor(Object.getPrototypeOf(error) as object | null, cls));
  const own = Object.getOwnPropertyDescriptors(typed) as Record<string | symbol, PropertyDescriptor>;
  delete own["stack"];
  Object.defineProperties(error, own);
  return error as E & OutlayError;
}

function prototypeFor(sdkPrototype: object | null, cls: typeof OutlayError): object {
  if (sdkPrototype === null) {
    return makePrototype(null, cls);
  }
  let byClass = PROTOTYPES.get(sdkPrototype);
  if (byClass === undefined) {
    byClass = new Map();
    PROTOTYPES.set(sdkPrototype, byClass);
  }
  let prototype = byClass.get(cls);
  if (prototype === undefined) {
    prototype = makePrototype(sdkPrototype, cls);
    byClass.set(cls, prototype);
  }
  return prototype;
}

/** The SDK error's prototype, under the getters of `cls` and of its bases up to OutlayError. */
function makePrototype(sdkPrototype: object | null, cls: typeof OutlayError): object {
  const chain: object[] = [];
  for (let p: object | null = cls.prototype; p !== null && p !== Error.prototype; p = Object.getPrototypeOf(p) as object | null) {
    chain.unshift(p);
  }
  const descriptors: PropertyDescriptorMap = {};
  for (const p of chain) {
    for (const [name, descriptor] of Object.entries(Object.getOwnPropertyDescriptors(p))) {
      if (name !== "constructor") {
        descriptors[name] = descriptor;
      }
    }
  }
  return Object.create(sdkPrototype, { ...descriptors, [JOINED_CLASS]: { value: cls } });
}
