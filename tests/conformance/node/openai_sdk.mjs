// The openai Node SDK's Chat Completions against the gateway.
import OpenAI from "openai";
import { zodResponseFormat } from "openai/helpers/zod";
import { z } from "zod";

import { BASE_URL, KEY, check, only, runAll, servedBy } from "./common.mjs";

const client = new OpenAI({ baseURL: BASE_URL, apiKey: KEY, maxRetries: 0, timeout: 30000 });
const WEATHER = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The current weather of a city.",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};

await runAll({
  async create({ model, provider }) {
    const reply = await client.chat.completions.create({
      model, max_tokens: 8, messages: [{ role: "user", content: "Hi" }], ...only(provider),
    });
    check(reply.choices[0].message.content, "a reply");
    servedBy(reply, provider);
    check(["stop", "length"].includes(reply.choices[0].finish_reason), reply.choices[0].finish_reason);
  },
  async stream({ model, provider }) {
    const stream = await client.chat.completions.create({
      model, max_tokens: 8, stream: true, stream_options: { include_usage: true },
      messages: [{ role: "user", content: "Stream please" }], ...only(provider),
    });
    let text = "";
    let usage;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      usage = chunk.usage ?? usage;
    }
    check(text, "streamed text");
    check(usage?.completion_tokens === 8, `usage ${JSON.stringify(usage)}`);
  },
  async tools({ model, provider }) {
    const messages = [{ role: "user", content: "What is the weather in Paris? Use get_weather." }];
    const request = { model, max_tokens: 64, tools: [WEATHER], ...only(provider) };
    const first = await client.chat.completions.create({ ...request, messages });
    const call = first.choices[0].message.tool_calls?.[0];
    check(first.choices[0].finish_reason === "tool_calls", first.choices[0].finish_reason);
    check(call?.function.name === "get_weather", "a get_weather call");
    check(typeof JSON.parse(call.function.arguments).city === "string", call.function.arguments);
    messages.push(first.choices[0].message);
    messages.push({ role: "tool", tool_call_id: call.id, content: "Sunny, 21 C" });
    const final = await client.chat.completions.create({ ...request, messages });
    check(final.choices[0].message.content, "a final answer");
  },
  async parse({ model, provider }) {
    const City = z.object({ name: z.string(), population: z.number().int() });
    const reply = await client.chat.completions.parse({
      model, max_tokens: 64, response_format: zodResponseFormat(City, "city"),
      messages: [{ role: "user", content: "The largest city of France, as JSON." }], ...only(provider),
    });
    const city = reply.choices[0].message.parsed;
    check(city && typeof city.name === "string" && Number.isInteger(city.population), JSON.stringify(city));
  },
  async errors({ model }) {
    try {
      await client.chat.completions.create({ model, max_tokens: -1, messages: [{ role: "user", content: "hi" }] });
    } catch (error) {
      check(error instanceof OpenAI.BadRequestError, `${error.constructor.name}`);
      return;
    }
    throw new Error("max_tokens -1 was accepted");
  },
  // The Responses API (run by tests/conformance/test_responses_clients.py).
  async "responses.create"({ model, provider }) {
    const response = await client.responses.create({
      model, input: "Hello there", max_output_tokens: 16, ...only(provider),
    });
    check(response.output_text, "output_text");
  },
  async "responses.stream"({ model, provider }) {
    const stream = await client.responses.create({
      model, input: "Stream please", max_output_tokens: 16, stream: true, ...only(provider),
    });
    let text = "";
    let completed;
    for await (const event of stream) {
      if (event.type === "response.output_text.delta") text += event.delta;
      if (event.type === "response.completed") completed = event.response;
    }
    // output_text is the SDK's convenience on a created response, not on a streamed event's.
    const final = (completed?.output ?? [])
      .filter((item) => item.type === "message")
      .flatMap((item) => item.content)
      .filter((part) => part.type === "output_text")
      .map((part) => part.text)
      .join("");
    check(text && final === text, `streamed ${JSON.stringify(text)}, completed ${JSON.stringify(final)}`);
  },
  async "responses tools"({ model, provider }) {
    const tools = [{ type: "function", ...WEATHER.function }];
    const input = [{ role: "user", content: "What is the weather in Paris? Use get_weather." }];
    const request = { model, max_output_tokens: 64, tools, ...only(provider) };
    const first = await client.responses.create({ ...request, input });
    const call = first.output.find((item) => item.type === "function_call");
    check(call?.name === "get_weather", `output ${JSON.stringify(first.output)}`);
    input.push(...first.output, { type: "function_call_output", call_id: call.call_id, output: "Sunny" });
    const final = await client.responses.create({ ...request, input });
    check(final.output_text, "a final answer");
  },
});
