// The playground: a chat streamed through POST /o/<org>/playground/chat, the same gateway path
// as /v1/chat/completions (or /v1/messages, in Anthropic's format), on the session's login. Each
// reply shows the raw request sent and the raw event stream received. The conversation lives
// only in this tab.
(function () {
  "use strict";

  var root = document.getElementById("playground");
  var dataElement = document.getElementById("playground-data");
  if (!root || !dataElement) {
    return;
  }
  var data = JSON.parse(dataElement.textContent);
  var canChat = root.dataset.canChat === "true";
  var csrfToken = root.dataset.csrfToken;

  var els = {
    api: document.getElementById("pg-api"),
    model: document.getElementById("pg-model"),
    modelHelp: document.getElementById("pg-model-help"),
    strategy: document.getElementById("pg-strategy"),
    strategyHelp: document.getElementById("pg-strategy-help"),
    provider: document.getElementById("pg-provider"),
    system: document.getElementById("pg-system"),
    maxTokens: document.getElementById("pg-max-tokens"),
    log: document.getElementById("pg-log"),
    empty: document.getElementById("pg-empty"),
    form: document.getElementById("pg-form"),
    input: document.getElementById("pg-input"),
    send: document.getElementById("pg-send"),
    reset: document.getElementById("pg-reset"),
  };

  var history = []; // [{role, content}], user and assistant turns that went through
  var controller = null; // the AbortController of the reply being streamed
  var conversation = 0; // bumped by "New chat", so a reply still arriving stays out of history

  // ------------------------------------------------------------------ small helpers
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined && text !== null) {
      node.textContent = text;
    }
    return node;
  }

  function icon(name) {
    var node = el("i", "bi " + name);
    node.setAttribute("aria-hidden", "true");
    return node;
  }

  // Text with its line breaks, without innerHTML (model output is never markup).
  function appendText(target, text) {
    var parts = text.split("\n");
    for (var i = 0; i < parts.length; i++) {
      if (i > 0) {
        target.appendChild(document.createElement("br"));
      }
      if (parts[i]) {
        target.appendChild(document.createTextNode(parts[i]));
      }
    }
  }

  function formatMs(ms) {
    if (ms === null || ms === undefined || !isFinite(ms)) {
      return "—";
    }
    return ms < 1000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(2) + " s";
  }

  // Costs are fractions of a cent: show every digit down to the nano-dollar.
  function formatUsd(value) {
    var n = Number(value);
    if (value === null || value === undefined || !isFinite(n)) {
      return "—";
    }
    var text = n.toFixed(9).replace(/0+$/, "");
    var decimals = text.length - text.indexOf(".") - 1;
    if (decimals < 2) {
      text += "0".repeat(2 - decimals);
    }
    return "$" + text;
  }

  function modelInfo(modelId) {
    return data.models[modelId] || null;
  }

  function providerInfo(modelId, slug) {
    var model = modelInfo(modelId) || modelInfo(els.model.value);
    if (!model) {
      return null;
    }
    for (var i = 0; i < model.providers.length; i++) {
      if (model.providers[i].slug === slug) {
        return model.providers[i];
      }
    }
    return null;
  }

  function nearBottom() {
    return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 120;
  }

  function keepInView(stick) {
    if (stick) {
      els.form.scrollIntoView({ block: "end" });
    }
  }

  // ------------------------------------------------------------------ settings panel
  function fillProviders() {
    var model = modelInfo(els.model.value);
    var pinned = els.provider.value;
    while (els.provider.options.length > 1) {
      els.provider.remove(1);
    }
    if (!model) {
      return;
    }
    model.providers.forEach(function (p) {
      var label = p.name + " · $" + p.input + " / $" + p.output;
      var option = new Option(label, p.slug);
      els.provider.add(option);
    });
    els.provider.value = providerInfo(els.model.value, pinned) ? pinned : "";
    var simulated = model.providers.filter(function (p) {
      return p.simulated;
    }).length;
    var count = model.providers.length;
    els.modelHelp.textContent =
      els.model.value +
      " · " +
      count +
      (count === 1 ? " provider" : " providers") +
      (simulated ? (simulated === count ? ", simulated" : " (" + simulated + " simulated)") : "") +
      " · up to " +
      model.maxOutputTokens.toLocaleString() +
      " output tokens";
    els.maxTokens.max = String(model.maxOutputTokens);
    if (Number(els.maxTokens.value) > model.maxOutputTokens) {
      els.maxTokens.value = String(model.maxOutputTokens);
    }
  }

  function showStrategyHelp() {
    var option = els.strategy.options[els.strategy.selectedIndex];
    els.strategyHelp.textContent = option ? option.dataset.help || "" : "";
  }

  // ------------------------------------------------------------------ the conversation
  var API_PATHS = { chat: "/v1/chat/completions", messages: "/v1/messages" };

  // The request as the chosen API takes it: what the page sends, shown under the reply.
  function buildRequest(api, modelId, system, turns, maxTokens) {
    if (api === "messages") {
      var request = {
        model: modelId,
        max_tokens: maxTokens > 0 ? maxTokens : 1024,
        messages: turns,
        stream: true,
      };
      if (system) {
        request.system = system;
      }
      return request;
    }
    var messages = system ? [{ role: "system", content: system }] : [];
    var chat = {
      model: modelId,
      messages: messages.concat(turns),
      stream: true,
      stream_options: { include_usage: true },
    };
    if (maxTokens > 0) {
      chat.max_tokens = maxTokens;
    }
    return chat;
  }

  function addUser(text) {
    var row = el("div", "row justify-content-end mb-3");
    var col = el("div", "col-11 col-md-9 d-flex justify-content-end");
    var bubble = el("div", "bg-primary-subtle text-body-emphasis rounded-3 px-3 py-2 text-break");
    bubble.setAttribute("data-testid", "pg-user-message");
    appendText(bubble, text);
    col.appendChild(bubble);
    row.appendChild(col);
    els.log.appendChild(row);
    return row;
  }

  function addReply(modelId) {
    var model = modelInfo(modelId);
    var wrap = el("div", "mb-4");
    wrap.setAttribute("data-testid", "pg-reply");
    var head = el("div", "d-flex flex-wrap align-items-center gap-2 mb-1 small");
    head.appendChild(icon("bi-stars text-primary"));
    head.appendChild(el("span", "fw-semibold text-body-emphasis", model ? model.name : modelId));
    var provider = el("span", "badge badge-soft-primary d-none");
    provider.setAttribute("data-testid", "pg-reply-provider");
    var simulated = el("span", "badge badge-soft-warning d-none", "simulated");
    simulated.setAttribute("data-testid", "pg-reply-simulated");
    simulated.title = "Served by the built-in provider simulator, not the real provider.";
    head.appendChild(provider);
    head.appendChild(simulated);

    var body = el("div", "border rounded-3 bg-body px-3 py-2 text-break");
    var text = el("div");
    text.setAttribute("data-testid", "pg-reply-text");
    var waiting = el("span", "d-inline-flex align-items-center gap-2 text-body-secondary small");
    var spinner = el("span", "spinner-grow spinner-grow-sm");
    spinner.setAttribute("aria-hidden", "true");
    waiting.appendChild(spinner);
    waiting.appendChild(el("span", null, "Waiting for the first token…"));
    body.appendChild(text);
    body.appendChild(waiting);

    var meta = el("div", "d-flex flex-wrap gap-3 small text-body-secondary mt-1");
    meta.setAttribute("data-testid", "pg-reply-meta");

    function rawPanel(label, testid) {
      var details = el("details", "small mt-1");
      details.appendChild(el("summary", "text-body-secondary", label));
      var pre = el("pre", "bg-body-tertiary border rounded-2 p-2 mb-0 small text-wrap text-break");
      pre.setAttribute("data-testid", testid);
      details.appendChild(pre);
      return { details: details, pre: pre };
    }
    var rawRequest = rawPanel("Raw request", "pg-raw-request");
    var rawResponse = rawPanel("Raw response", "pg-raw-response");

    wrap.appendChild(head);
    wrap.appendChild(body);
    wrap.appendChild(meta);
    wrap.appendChild(rawRequest.details);
    wrap.appendChild(rawResponse.details);
    els.log.appendChild(wrap);
    return {
      wrap: wrap,
      provider: provider,
      simulated: simulated,
      body: body,
      text: text,
      waiting: waiting,
      meta: meta,
      rawRequest: rawRequest.pre,
      rawResponse: rawResponse.pre,
    };
  }

  function metaItem(reply, iconName, label, value, testid) {
    var item = el("span", "d-inline-flex align-items-center gap-1");
    item.appendChild(icon(iconName));
    item.appendChild(el("span", null, label));
    var strong = el("span", "fw-medium text-body-emphasis", value);
    if (testid) {
      strong.setAttribute("data-testid", testid);
    }
    item.appendChild(strong);
    reply.meta.appendChild(item);
  }

  function showError(reply, error, partial) {
    var alert = el("div", "alert alert-danger d-flex align-items-start gap-2 mt-2 mb-0");
    alert.setAttribute("role", "alert");
    alert.setAttribute("data-testid", "pg-reply-error");
    alert.appendChild(icon("bi-exclamation-octagon-fill flex-shrink-0"));
    var box = el("div");
    box.appendChild(el("div", "fw-medium", error.message || "The request failed."));
    if (partial) {
      box.appendChild(el("div", "small", "The reply above is incomplete."));
    }
    var details = [];
    if (error.code) {
      details.push("code " + error.code);
    }
    if (error.status) {
      details.push("HTTP " + error.status);
    }
    if (details.length) {
      box.appendChild(el("div", "small", details.join(" · ")));
    }
    var attempts = (error.metadata && error.metadata.attempts) || [];
    if (attempts.length) {
      // Retries of one provider failing the same way read better as one line with a count.
      var groups = [];
      attempts.forEach(function (a) {
        var key = [a.provider, a.outcome, a.status, a.message].join("|");
        var last = groups[groups.length - 1];
        if (last && last.key === key) {
          last.count += 1;
        } else {
          groups.push({ key: key, attempt: a, count: 1 });
        }
      });
      var list = el("ul", "small mb-0 mt-1 ps-3");
      list.setAttribute("data-testid", "pg-reply-attempts");
      groups.forEach(function (g) {
        var a = g.attempt;
        var line =
          a.provider +
          ": " +
          a.outcome +
          (a.status ? " (" + a.status + ")" : "") +
          (g.count > 1 ? " ×" + g.count : a.duration_ms !== undefined ? ", " + formatMs(a.duration_ms) : "") +
          (a.message ? " · " + a.message : "");
        list.appendChild(el("li", null, line));
      });
      box.appendChild(list);
    }
    alert.appendChild(box);
    reply.wrap.appendChild(alert);
  }

  async function readError(response) {
    var type = response.headers.get("content-type") || "";
    if (type.indexOf("application/json") === 0) {
      try {
        var body = await response.json();
        if (body && body.error) {
          body.error.status = response.status;
          return body.error;
        }
      } catch (e) {
        // fall through to the generic message
      }
    }
    var message = "The request failed.";
    if (response.status === 403) {
      message = "The request was refused. Reload the page (your session or its security token may have expired).";
    } else if (response.status === 404) {
      message = "This organization wasn't found. Reload the page.";
    } else if (response.status >= 500) {
      message = "The server had an error. Try again in a moment.";
    }
    return { message: message, status: response.status };
  }

  function setBusy(busy) {
    var label = els.send.querySelector("span");
    var sendIcon = els.send.querySelector("i");
    if (busy) {
      label.textContent = "Stop";
      sendIcon.className = "bi bi-stop-fill";
      els.send.setAttribute("data-state", "streaming");
    } else {
      label.textContent = "Send";
      sendIcon.className = "bi bi-send";
      els.send.removeAttribute("data-state");
      controller = null;
    }
    els.model.disabled = busy;
  }

  async function send(text) {
    var modelId = els.model.value;
    var mine = conversation;
    var system = els.system.value.trim();
    var maxTokens = parseInt(els.maxTokens.value, 10);
    var api = els.api ? els.api.value : "chat";
    var request = buildRequest(api, modelId, system, history.concat([{ role: "user", content: text }]), maxTokens);
    var payload = {
      api: api,
      request: request,
      strategy: els.strategy.value,
      provider: els.provider.value || null,
    };

    if (els.empty) {
      els.empty.remove();
      els.empty = null;
    }
    addUser(text);
    var reply = addReply(modelId);
    reply.rawRequest.textContent = "POST " + API_PATHS[api] + "\n" + JSON.stringify(request, null, 2);
    keepInView(true);
    var myController = new AbortController();
    controller = myController;
    setBusy(true);

    var started = performance.now();
    var firstAt = null;
    var content = "";
    var usage = null;
    var failure = null;
    var finish = null;
    var done = false;
    var stopped = false;
    var providerShown = false;

    function showProvider(modelName, slug) {
      if (providerShown || !slug) {
        return;
      }
      providerShown = true;
      var info = providerInfo(modelName, slug);
      reply.provider.textContent = info ? info.name : slug;
      reply.provider.title = slug + (info && info.region ? " · " + info.region : "");
      reply.provider.classList.remove("d-none");
      if (info && info.simulated) {
        reply.simulated.classList.remove("d-none");
      }
    }

    function addText(piece) {
      if (firstAt === null) {
        firstAt = performance.now();
        reply.waiting.remove();
      }
      var stick = nearBottom();
      content += piece;
      appendText(reply.text, piece);
      keepInView(stick);
    }

    // Anthropic's Messages events: text deltas, the stop reason and usage at the end.
    function handleMessage(event) {
      if (event.type === "message_start" && event.message) {
        showProvider(event.message.model, event.message.provider);
      } else if (event.type === "content_block_delta" && event.delta && event.delta.type === "text_delta") {
        if (event.delta.text) {
          addText(event.delta.text);
        }
      } else if (event.type === "message_delta") {
        var reason = event.delta && event.delta.stop_reason;
        finish = reason === "max_tokens" ? "length" : reason;
        var u = event.usage || {};
        usage = {
          prompt_tokens: (u.input_tokens || 0) + (u.cache_read_input_tokens || 0) + (u.cache_creation_input_tokens || 0),
          completion_tokens: u.output_tokens || 0,
          cost: u.cost,
        };
      } else if (event.type === "message_stop") {
        done = true;
      } else if (event.type === "error") {
        failure = event.error || { message: "The stream failed." };
        done = true;
      }
    }

    function handle(chunk) {
      if (api === "messages") {
        handleMessage(chunk);
        return;
      }
      if (!providerShown && chunk.provider) {
        providerShown = true;
        var info = providerInfo(chunk.model, chunk.provider);
        reply.provider.textContent = info ? info.name : chunk.provider;
        reply.provider.title = chunk.provider + (info && info.region ? " · " + info.region : "");
        reply.provider.classList.remove("d-none");
        if (info && info.simulated) {
          reply.simulated.classList.remove("d-none");
        }
      }
      (chunk.choices || []).forEach(function (choice) {
        var delta = choice.delta || {};
        if (typeof delta.content === "string" && delta.content) {
          addText(delta.content);
        }
        if (choice.finish_reason) {
          finish = choice.finish_reason;
        }
      });
      if (chunk.usage) {
        usage = chunk.usage;
      }
      if (chunk.error) {
        failure = chunk.error;
      }
    }

    try {
      var response = await fetch(data.chatUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          Accept: "text/event-stream",
          "X-CSRFToken": csrfToken,
        },
        body: JSON.stringify(payload),
        signal: myController.signal,
      });
      if (!response.ok) {
        failure = await readError(response);
        reply.rawResponse.textContent = "HTTP " + response.status + "\n" + JSON.stringify(failure, null, 2);
      } else {
        reply.rawResponse.textContent = "HTTP " + response.status + " " + (response.headers.get("content-type") || "") + "\n\n";
        var reader = response.body.getReader();
        var decoder = new TextDecoder();
        var buffer = "";
        while (!done) {
          var read = await reader.read();
          if (read.done) {
            break;
          }
          var received = decoder.decode(read.value, { stream: true });
          reply.rawResponse.appendChild(document.createTextNode(received));
          buffer += received.replace(/\r\n/g, "\n");
          var end;
          while (!done && (end = buffer.indexOf("\n\n")) >= 0) {
            var event = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            var lines = event.split("\n").filter(function (line) {
              return line.indexOf("data:") === 0;
            });
            if (!lines.length) {
              continue;
            }
            var raw = lines
              .map(function (line) {
                return line.slice(5).replace(/^ /, "");
              })
              .join("\n");
            if (raw === "[DONE]") {
              done = true;
              break;
            }
            try {
              handle(JSON.parse(raw));
            } catch (e) {
              // one unreadable event is skipped, not fatal
            }
          }
        }
        if (done) {
          reader.cancel().catch(function () {});
        } else if (!failure) {
          failure = { message: "The stream ended before it was complete." };
        }
      }
    } catch (error) {
      if (error && error.name === "AbortError") {
        stopped = true;
      } else {
        failure = { message: "The connection broke: " + (error && error.message ? error.message : error) };
      }
    }

    var total = performance.now() - started;
    if (reply.waiting.isConnected) {
      reply.waiting.remove();
    }
    if (!content) {
      reply.body.classList.add("d-none");
    }
    if (providerShown || firstAt !== null) {
      metaItem(reply, "bi-lightning-charge", "first token", formatMs(firstAt === null ? null : firstAt - started), "pg-ttft");
      metaItem(reply, "bi-stopwatch", "total", formatMs(total), "pg-total");
    }
    if (usage) {
      metaItem(
        reply,
        "bi-hash",
        "tokens",
        (usage.prompt_tokens || 0).toLocaleString() + " in · " + (usage.completion_tokens || 0).toLocaleString() + " out",
        "pg-tokens"
      );
      metaItem(reply, "bi-coin", "cost", formatUsd(usage.cost), "pg-cost");
    }
    if (finish === "length") {
      metaItem(reply, "bi-scissors", "", "cut at max tokens");
    }
    if (stopped) {
      metaItem(reply, "bi-stop-circle", "", "stopped");
    }

    if (failure) {
      showError(reply, failure, content.length > 0);
      if (!content && !els.input.value) {
        els.input.value = text; // nothing came back: let the user resend as is
      }
    } else if (content && mine === conversation) {
      history.push({ role: "user", content: text });
      history.push({ role: "assistant", content: content });
    }
    if (controller === myController) {
      setBusy(false);
      keepInView(true);
      els.input.focus();
    }
  }

  // ------------------------------------------------------------------ wiring
  els.model.addEventListener("change", fillProviders);
  els.strategy.addEventListener("change", showStrategyHelp);

  els.form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (controller) {
      controller.abort();
      return;
    }
    if (!canChat) {
      return;
    }
    var text = els.input.value.trim();
    if (!text) {
      els.input.focus();
      return;
    }
    els.input.value = "";
    send(text);
  });

  els.input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      els.form.requestSubmit();
    }
  });

  if (els.reset) {
    els.reset.addEventListener("click", function () {
      if (controller) {
        controller.abort();
        setBusy(false);
      }
      conversation += 1;
      history = [];
      els.log.replaceChildren();
      var empty = el("div", "empty-state py-5");
      empty.appendChild(el("p", "mb-0 text-body-secondary", "New conversation. Send a message to start."));
      els.log.appendChild(empty);
      els.empty = empty;
      els.input.focus();
    });
  }

  fillProviders();
  showStrategyHelp();
})();
