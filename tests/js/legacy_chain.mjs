// The legacy Langfuse JS integration (langfuse-langchain 3.x, the batch /api/public/ingestion API) tracing a
// @langchain/core chain with a fake chat model. Keys and host from LANGFUSE_PUBLIC_KEY/SECRET_KEY/BASEURL.
import { CallbackHandler } from "langfuse-langchain";
import { ChatPromptTemplate } from "@langchain/core/prompts";
import { FakeListChatModel } from "@langchain/core/utils/testing";

const handler = new CallbackHandler({
  publicKey: process.env.LANGFUSE_PUBLIC_KEY,
  secretKey: process.env.LANGFUSE_SECRET_KEY,
  baseUrl: process.env.LANGFUSE_BASEURL,
  sessionId: "js-legacy-session",
  userId: "js-legacy-user",
});
const model = new FakeListChatModel({ responses: ["Otters hold hands while they sleep."] });
const chain = ChatPromptTemplate.fromTemplate("Tell me a fact about {animal}").pipe(model);
const result = await chain.invoke({ animal: "otters" }, { callbacks: [handler] });
console.log(result.content);
await handler.shutdownAsync();
console.log("TRACE_ID", handler.getTraceId());
