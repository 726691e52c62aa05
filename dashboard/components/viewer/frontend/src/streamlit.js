// The three messages of Streamlit's component protocol (components v1), by hand.
// Why not streamlit-component-lib: it bundles React and Apache Arrow (hundreds of kB) for
// these few lines; the protocol is the one that library implements (API version 1).

function send(type, data) {
  window.parent.postMessage({ isStreamlitMessage: true, type, ...data }, "*");
}

/** Tell Streamlit the component is ready: it then sends the first render event. */
export function ready() {
  send("streamlit:componentReady", { apiVersion: 1 });
}

/** The iframe's height in CSS pixels (Streamlit sizes the iframe to it). */
export function setFrameHeight(height) {
  send("streamlit:setFrameHeight", { height });
}

/** Calls ``handler(args)`` on every render event from the page that embeds us (and only from it). */
export function onRender(handler) {
  window.addEventListener("message", (event) => {
    if (event.source !== window.parent) return;
    const data = event.data || {};
    if (data.type === "streamlit:render") handler(data.args || {});
  });
}
