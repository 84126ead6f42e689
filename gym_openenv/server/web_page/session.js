// One OpenEnv session over the page's ws (/web/ws, behind any path prefix):
// OpenEnv's JSON messages, answered in order.

export class Session {
  constructor({ onPartial, onClose, onUnexpected }) {
    this.ws = null;
    this.waiting = []; // resolvers of sent requests, in order (the server answers in order)
    this.onPartial = onPartial;
    this.onClose = onClose;
    this.onUnexpected = onUnexpected;
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  async connect() {
    if (this.open) return;
    const url = new URL("ws", document.baseURI); // beside the page, which is the folder <prefix>/web/
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onclose = (event) => reject(new Error(`could not open a session (${closeReason(event)})`));
    });
    ws.onmessage = (event) => this.receive(JSON.parse(event.data));
    ws.onclose = (event) => this.closed(event);
    this.ws = ws;
  }

  // The reply to `message` (an error reply too); partial observations go to onPartial.
  async request(message) {
    await this.connect();
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.ws.send(JSON.stringify(message));
    });
  }

  receive(message) {
    if (message.type === "partial_observation") {
      this.onPartial(message.data);
      return;
    }
    const waiter = this.waiting.shift();
    if (waiter) waiter.resolve(message);
    else this.onUnexpected(message); // e.g. the capacity error sent before the server closes
  }

  closed(event) {
    this.ws = null;
    for (const waiter of this.waiting.splice(0)) waiter.reject(new Error(`the session ended (${closeReason(event)})`));
    this.onClose(event);
  }
}

function closeReason(event) {
  return `WebSocket closed, code ${event.code}${event.reason ? ": " + event.reason : ""}`;
}
