// The official Langfuse JS SDK (v5: @langfuse/langchain + @langfuse/otel on an OpenTelemetry NodeTracerProvider)
// tracing a @langchain/core chain with a fake chat model. Keys and host come from LANGFUSE_* like any app.
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { LangfuseSpanProcessor } from "@langfuse/otel";
import { CallbackHandler } from "@langfuse/langchain";
import { ChatPromptTemplate } from "@langchain/core/prompts";
import { FakeListChatModel } from "@langchain/core/utils/testing";

const processor = new LangfuseSpanProcessor();
const provider = new NodeTracerProvider({ spanProcessors: [processor] });
provider.register();

const handler = new CallbackHandler({ sessionId: "js-session", userId: "js-user", tags: ["js-v5"] });
const model = new FakeListChatModel({ responses: ["Why did the cat sit on the computer? To keep an eye on the mouse."] });
const chain = ChatPromptTemplate.fromTemplate("Tell me a joke about {topic}").pipe(model);
const result = await chain.invoke({ topic: "cats" }, { callbacks: [handler] });
console.log(result.content);
await processor.forceFlush();
await provider.shutdown();
console.log("TRACE_ID", handler.last_trace_id);
