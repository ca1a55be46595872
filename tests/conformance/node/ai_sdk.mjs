// The Vercel AI SDK (generateText, streamText, generateObject, tools) through two of its
// providers: @ai-sdk/openai-compatible (Chat Completions), @ai-sdk/anthropic (Messages) and
// @ai-sdk/openai, whose default model calls the Responses API.
// A scenario's `package` says which.
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateObject, generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

import { BASE_URL, KEY, check, fetchPinnedTo, only, runAll, servedBy } from "./common.mjs";

const compatible = createOpenAICompatible({
  name: "llmapi", baseURL: BASE_URL, apiKey: KEY, includeUsage: true, supportsStructuredOutputs: true,
});

// The model, and the call options that pin the provider: the openai-compatible provider sends
// its provider options in the body; the others have no such option, so their fetch adds it.
function setup({ package: pkg, model, provider }) {
  if (pkg === "openai-compatible") {
    return { model: compatible.chatModel(model), providerOptions: { llmapi: only(provider) }, maxRetries: 0 };
  }
  if (pkg === "openai") {
    const openai = createOpenAI({ baseURL: BASE_URL, apiKey: KEY, fetch: fetchPinnedTo(provider) });
    return { model: openai(model), maxRetries: 0 };
  }
  const anthropic = createAnthropic({ baseURL: BASE_URL, apiKey: KEY, fetch: fetchPinnedTo(provider) });
  return { model: anthropic(model), maxRetries: 0 };
}

const weather = tool({
  description: "The current weather of a city.",
  inputSchema: z.object({ city: z.string() }),
  execute: async ({ city }) => ({ city, forecast: "Sunny, 21 C" }),
});

await runAll({
  async generateText(scenario) {
    const result = await generateText({ ...setup(scenario), maxOutputTokens: 8, prompt: "Hello there" });
    check(result.text, "text");
    servedBy(result.response.body, scenario.provider);
    check(result.usage.outputTokens > 0, `usage ${JSON.stringify(result.usage)}`);
  },
  async streamText(scenario) {
    const result = streamText({
      ...setup(scenario), maxOutputTokens: 8, prompt: "Stream please",
      onError: ({ error }) => { throw error; },
    });
    let text = "";
    for await (const delta of result.textStream) text += delta;
    check(text, "streamed text");
    check((await result.usage).outputTokens === 8, `usage ${JSON.stringify(await result.usage)}`);
  },
  async generateObject(scenario) {
    const { object } = await generateObject({
      ...setup(scenario), maxOutputTokens: 64,
      schema: z.object({ name: z.string(), population: z.number().int() }),
      prompt: "The largest city of France.",
    });
    check(typeof object.name === "string" && Number.isInteger(object.population), JSON.stringify(object));
  },
  async tools(scenario) {
    const result = await generateText({
      ...setup(scenario), maxOutputTokens: 64, tools: { get_weather: weather },
      stopWhen: stepCountIs(3), prompt: "What is the weather in Paris? Use get_weather.",
    });
    const calls = result.steps.flatMap((step) => step.toolCalls);
    check(calls.length >= 1 && calls[0].toolName === "get_weather", `calls ${JSON.stringify(calls)}`);
    check(result.steps.length >= 2 && result.text, `steps ${result.steps.length}, text ${result.text}`);
  },
});
