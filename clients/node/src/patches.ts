/** Replacing properties of other code's objects, and putting back exactly what was there. */

interface Replaced {
  owner: object;
  name: PropertyKey;
  /** The owner's own descriptor before, or undefined when the property was inherited or absent. */
  original: PropertyDescriptor | undefined;
}

/** The replacements of one interception, undone in reverse order. */
export class Patches {
  private readonly done: Replaced[] = [];
  private closed = false;

  /** Whether `undo()` has run: a replacement that arrives late (after an import) is not made. */
  get undone(): boolean {
    return this.closed;
  }

  /**
   * Set `owner[name]` to `wrap(current)`, where `current` is what `owner[name]` resolves to
   * now, inherited or not. Returns false, changing nothing, once the patches are undone.
   */
  replace<T>(owner: object, name: PropertyKey, wrap: (current: T) => T): boolean {
    if (this.closed) {
      return false;
    }
    const original = Object.getOwnPropertyDescriptor(owner, name);
    const current = Reflect.get(owner, name) as T;
    Object.defineProperty(owner, name, {
      value: wrap(current),
      writable: true,
      enumerable: original?.enumerable ?? false,
      configurable: true,
    });
    this.done.push({ owner, name, original });
    return true;
  }

  undo(): void {
    this.closed = true;
    for (let done = this.done.pop(); done !== undefined; done = this.done.pop()) {
      if (done.original === undefined) {
        // an inherited property comes back by removing the one set on the owner
        Reflect.deleteProperty(done.owner, done.name);
      } else {
        Object.defineProperty(done.owner, done.name, done.original);
      }
    }
  }

  get size(): number {
    return this.done.length;
  }
}
