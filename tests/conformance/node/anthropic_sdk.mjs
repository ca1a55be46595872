// @anthropic-ai/sdk against the gateway's /v1/messages.
import Anthropic from "@anthropic-ai/sdk";

import { KEY, ROOT_URL, check, only, runAll, servedBy } from "./common.mjs";

const client = new Anthropic({ baseURL: ROOT_URL, apiKey: KEY, maxRetries: 0, timeout: 30000 });
const WEATHER = {
  name: "get_weather",
  description: "The current weather of a city.",
  input_schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
};

await runAll({
  async create({ model, provider }) {
    const message = await client.messages.create({
      model, max_tokens: 8, system: "Be brief.",
      messages: [{ role: "user", content: "Hello there" }], ...only(provider),
    });
    check(message.content[0].type === "text" && message.content[0].text, "a text block");
    servedBy(message, provider);
    check(["end_turn", "max_tokens"].includes(message.stop_reason), message.stop_reason);
  },
  async stream({ model, provider }) {
    const stream = client.messages.stream({
      model, max_tokens: 8, messages: [{ role: "user", content: "Stream please" }], ...only(provider),
    });
    let text = "";
    stream.on("text", (delta) => { text += delta; });
    const final = await stream.finalMessage();
    check(text && final.content[0].text === text, "streamed text is the final text");
    check(final.usage.output_tokens === 8, `output_tokens ${final.usage.output_tokens}`);
  },
  async tools({ model, provider }) {
    const messages = [{ role: "user", content: "What is the weather in Paris? Use get_weather." }];
    const request = { model, max_tokens: 64, tools: [WEATHER], ...only(provider) };
    const first = await client.messages.create({ ...request, messages });
    check(first.stop_reason === "tool_use", `stop_reason ${first.stop_reason}`);
    const call = first.content.find((block) => block.type === "tool_use");
    check(call?.name === "get_weather" && typeof call.input.city === "string", "a get_weather call");
    messages.push({ role: "assistant", content: first.content });
    messages.push({ role: "user", content: [{ type: "tool_result", tool_use_id: call.id, content: "Sunny, 21 C" }] });
    const final = await client.messages.create({ ...request, messages });
    check(final.content.at(-1).type === "text" && final.content.at(-1).text, "a final text");
  },
  async thinking({ model, provider }) {
    const message = await client.messages.create({
      model, max_tokens: 1100, thinking: { type: "enabled", budget_tokens: 1024 },
      messages: [{ role: "user", content: "Think, then answer: 2+2?" }], ...only(provider),
    });
    const kinds = message.content.map((block) => block.type);
    check(kinds[0] === "thinking" && kinds[1] === "text" && message.content[0].thinking, kinds.join(","));
  },
  async count_tokens({ model }) {
    const counted = await client.messages.countTokens({
      model, messages: [{ role: "user", content: "Hello" }],
    });
    check(counted.input_tokens > 0, `input_tokens ${counted.input_tokens}`);
  },
  async errors({ model }) {
    try {
      await client.messages.create({ model, max_tokens: 0, messages: [{ role: "user", content: "hi" }] });
    } catch (error) {
      check(error instanceof Anthropic.BadRequestError, `${error.constructor.name}`);
      check(error.error?.error?.type === "invalid_request_error", JSON.stringify(error.error));
      return;
    }
    throw new Error("max_tokens 0 was accepted");
  },
});
