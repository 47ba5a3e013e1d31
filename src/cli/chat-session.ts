/**
 * The conversation of `blyd chat`: the history of user and assistant
 * messages, and what a typed line means (a user turn, or a command:
 * /reset clears the history, /exit ends the session). The history is the
 * whole conversation sent with every turn (the model keeps no state between
 * turns); a turn joins the history only once its reply is complete, so a
 * failed turn leaves the history as it was.
 */
import type { ChatMessage } from '../model/tokenizer.ts'

export const CHAT_COMMANDS = ['/reset', '/exit'] as const

export type ChatInput =
  | { kind: 'empty' }
  | { kind: 'reset' }
  | { kind: 'exit' }
  | { kind: 'unknown', command: string }
  | { kind: 'turn', text: string }

/** What a typed line asks for. A line starting with "/" is a command ("//" escapes a leading slash). */
export function parseChatLine (line: string): ChatInput {
  const text = line.trim()
  if (text === '') {
    return { kind: 'empty' }
  }
  if (text.startsWith('//')) {
    return { kind: 'turn', text: text.slice(1) }
  }
  if (text.startsWith('/')) {
    const command = text.split(/\s+/)[0]
    if (command === '/reset') {
      return { kind: 'reset' }
    }
    if (command === '/exit' || command === '/quit') {
      return { kind: 'exit' }
    }
    return { kind: 'unknown', command }
  }
  return { kind: 'turn', text }
}

export class ChatHistory {
  private messages: ChatMessage[] = []

  /** the messages of a turn asking `text`: the history, then the new user message */
  ask (text: string): ChatMessage[] {
    return [...this.messages, { role: 'user', content: text }]
  }

  /** a completed turn joins the history */
  record (text: string, reply: string): void {
    this.messages.push({ role: 'user', content: text }, { role: 'assistant', content: reply })
  }

  reset (): void {
    this.messages = []
  }

  /** completed turns */
  get turns (): number {
    return this.messages.length / 2
  }
}
