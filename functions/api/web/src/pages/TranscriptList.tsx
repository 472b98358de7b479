// A file's transcript as a list of lines that seek the player (docs/web.md, "A file's page").
//
// Long transcripts (thousands of segments) stay fast: the list and each line are memoised, so the
// player's `timeupdate` (several times a second) re-renders nothing unless the current line changes,
// and then only the two lines whose mark moves; the lines outside the list's scroll box are neither
// laid out nor painted (`content-visibility: auto` in styles.css), yet all stay in the document, so
// the browser's find, screen readers and links to a time reach every line.
import type { JSX, RefObject } from "preact";
import { memo } from "preact/compat";
import { useI18n } from "../i18n";
import type { Schemas } from "../api/client";
import { formatClock } from "./MediaClock";

type Segment = Schemas["SpeechSegment"];

interface ListProps {
  segments: Segment[];
  /** The index of the segment under the player's time (-1: none). */
  current: number;
  speakerNames: Record<string, string>;
  /** Lines cannot seek (an image has no player). */
  disabled: boolean;
  /** Seek the player to `seconds` and play; must keep its identity between renders. */
  onSeek: (seconds: number) => void;
  listRef: RefObject<HTMLOListElement | null>;
}

export const TranscriptList = memo(function TranscriptList(props: ListProps): JSX.Element {
  const { t } = useI18n();
  const speaker = (segment: Segment) =>
    (segment.case_speaker_id && props.speakerNames[segment.case_speaker_id]) || segment.speaker || t.mediaUnknownSpeaker;
  return (
    <ol role="list" aria-label={t.mediaTranscriptLabel} class="transcript-list" ref={props.listRef}>
      {props.segments.map((segment, index) => (
        <Line
          key={segment.id}
          index={index}
          start={segment.start}
          meta={`${formatClock(segment.start)} · ${speaker(segment)}${segment.language ? ` · ${segment.language}` : ""}`}
          text={segment.kind === "unintelligible" ? t.mediaUnintelligible : segment.text}
          current={index === props.current}
          disabled={props.disabled}
          onSeek={props.onSeek}
        />
      ))}
    </ol>
  );
});

const Line = memo(function Line(props: {
  index: number;
  start: number;
  meta: string;
  text: string;
  current: boolean;
  disabled: boolean;
  onSeek: (seconds: number) => void;
}): JSX.Element {
  return (
    <li data-index={props.index} aria-current={props.current ? "true" : undefined} class={props.current ? "segment current" : "segment"}>
      <button type="button" onClick={() => props.onSeek(props.start)} disabled={props.disabled}>
        <span class="segment-meta">{props.meta}</span>
        <span class="segment-text">{props.text}</span>
      </button>
    </li>
  );
});
