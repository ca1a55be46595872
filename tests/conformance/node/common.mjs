// Shared by the conformance scripts: the scenarios to run come from the environment
// (LLMAPI_BASE_URL ".../v1", LLMAPI_KEY, CONFORMANCE_SCENARIOS: a JSON list of
// {scenario, wire, model, provider, ...}); each prints one JSON line {scenario, wire, ok, detail}.

export const BASE_URL = process.env.LLMAPI_BASE_URL;
export const KEY = process.env.LLMAPI_KEY;
export const ROOT_URL = BASE_URL.replace(/\/v1$/, "");

export const only = (provider) => ({ provider: { only: [provider] } });

// A fetch that adds the body field pinning a provider, for clients with no way to send extra
// body fields (the AI SDK's Anthropic provider).
export function fetchPinnedTo(provider) {
  return (url, init = {}) => {
    if (typeof init.body === "string" && init.body.startsWith("{")) {
      init = { ...init, body: JSON.stringify({ ...JSON.parse(init.body), ...only(provider) }) };
    }
    return fetch(url, init);
  };
}

export function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}

export async function runAll(handlers) {
  const scenarios = JSON.parse(process.env.CONFORMANCE_SCENARIOS);
  for (const scenario of scenarios) {
    const result = { scenario: scenario.scenario, wire: scenario.wire, client: scenario.client };
    try {
      const handler = handlers[scenario.scenario];
      if (!handler) throw new Error(`no scenario ${scenario.scenario}`);
      result.detail = (await handler(scenario)) ?? "";
      result.ok = true;
    } catch (error) {
      result.ok = false;
      result.detail = `${error?.constructor?.name}: ${error?.message}`.slice(0, 800);
      if (error?.responseBody) result.detail += ` | response: ${String(error.responseBody).slice(0, 400)}`;
    }
    process.stdout.write(JSON.stringify(result) + "\n");
  }
}

// The gateway names the provider that served a request in the response body.
export function servedBy(body, provider) {
  check(body?.provider === provider, `served by ${body?.provider}, not ${provider}`);
}
