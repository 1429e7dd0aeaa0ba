// Tactful: drop track events the catalog's tracking plan does not declare, before they leave the
// browser. analytics.js loads this as source middleware (enabledMiddleware in its settings).
window["tactful-tracking-planMiddleware"] = (function (declared) {
  return function (ctx) {
    var event = ctx.payload.obj;
    // Not calling next is how a source middleware drops an event.
    if (event.type === "track" && !Object.prototype.hasOwnProperty.call(declared, event.event)) return;
    ctx.next(ctx.payload);
  };
})(DECLARED_EVENTS);
