/**
 * Callbacks waiting for an answer, by the sequential number each message was sent with: a ring of
 * slots (the numbers are consecutive, and answers come back nearly in order), so registering and
 * answering one is an array write and read, without the hashing and the entry object per message a
 * `Map` costs. Numbers start at 1 and must be added in increasing order, each once.
 */
export class WaitingRing<T> {
  #cbs: (T | undefined)[];
  #ids: Float64Array;
  #sentAt: Float64Array;
  #mask: number;
  /** The oldest number that may still wait; every number below it has been answered. */
  #tail = 1;
  /** One past the newest number added. */
  #next = 1;
  #size = 0;

  constructor(capacity = 1024) {
    let n = 16;
    while (n < capacity) n *= 2;
    this.#cbs = new Array<T | undefined>(n).fill(undefined);
    this.#ids = new Float64Array(n);
    this.#sentAt = new Float64Array(n);
    this.#mask = n - 1;
  }

  /** Numbers waiting. */
  get size(): number {
    return this.#size;
  }

  /** Registers number `id` (the next one: above every number added before), sent at `sentAt`. */
  add(id: number, cb: T, sentAt: number): void {
    if (id < this.#next) throw new RangeError(`waiting numbers must increase: ${id} after ${this.#next - 1}`);
    if (this.#size === 0) this.#tail = id;
    if (id - this.#tail >= this.#cbs.length) this.#grow(id - this.#tail + 1);
    const slot = id & this.#mask;
    this.#cbs[slot] = cb;
    this.#ids[slot] = id;
    this.#sentAt[slot] = sentAt;
    this.#next = id + 1;
    this.#size++;
  }

  /** Removes number `id` and gives its callback; undefined when it is not waiting (answered, expired). */
  take(id: number): T | undefined {
    if (!(id >= this.#tail && id < this.#next)) return undefined;
    const slot = id & this.#mask;
    const cb = this.#cbs[slot];
    if (cb === undefined || this.#ids[slot] !== id) return undefined;
    this.#cbs[slot] = undefined;
    this.#size--;
    if (id === this.#tail) this.#advance();
    return cb;
  }

  /** Removes and gives, oldest first, every callback registered before `limit` (by `sentAt`). */
  takeSentBefore(limit: number): T[] {
    const out: T[] = [];
    for (let id = this.#tail; id < this.#next; id++) {
      const slot = id & this.#mask;
      const cb = this.#cbs[slot];
      if (cb === undefined) continue;
      if (this.#sentAt[slot]! > limit) break; // sent in order, so every later one is newer
      this.#cbs[slot] = undefined;
      this.#size--;
      out.push(cb);
    }
    this.#advance();
    return out;
  }

  /** Removes and gives every callback, oldest first. */
  takeAll(): T[] {
    return this.takeSentBefore(Number.POSITIVE_INFINITY);
  }

  /** Moves the tail past the answered numbers at the old end. */
  #advance(): void {
    while (this.#tail < this.#next && this.#cbs[this.#tail & this.#mask] === undefined) this.#tail++;
  }

  /** A ring big enough for `span` consecutive numbers from the tail, keeping every entry. */
  #grow(span: number): void {
    let n = this.#cbs.length * 2;
    while (n < span) n *= 2;
    const cbs = new Array<T | undefined>(n).fill(undefined);
    const ids = new Float64Array(n);
    const sentAt = new Float64Array(n);
    const mask = n - 1;
    for (let id = this.#tail; id < this.#next; id++) {
      const from = id & this.#mask;
      const cb = this.#cbs[from];
      if (cb === undefined) continue;
      const to = id & mask;
      cbs[to] = cb;
      ids[to] = id;
      sentAt[to] = this.#sentAt[from]!;
    }
    this.#cbs = cbs;
    this.#ids = ids;
    this.#sentAt = sentAt;
    this.#mask = mask;
  }
}
